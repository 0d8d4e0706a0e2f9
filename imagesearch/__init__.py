"""imagesearch: live-stream product retrieval (Tianchi Taobao Live / WAB)."""

__version__ = "0.1.0"
