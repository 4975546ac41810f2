"""Reports: JSON-friendly summaries of images and figures (montages) for people to look at."""

from medimg.report.figures import montage, overlay
from medimg.report.html import ReportSection, render_html
from medimg.report.summary import image_summary

__all__ = ["image_summary", "montage", "overlay", "ReportSection", "render_html"]
