"""laclip_lite: a teaching and ablation kit for CLIP and LaCLIP."""
__version__ = "0.1.0"
