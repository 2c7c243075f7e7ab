"""CLIP models: image towers (ViT, modified ResNet), text towers (causal Transformer, HF encoder), CLIP."""
from laclip_lite.models.clip import CLIP, build_model, count_params, no_weight_decay_names, param_groups
from laclip_lite.models.text import HFTextEncoder, TextTransformer
from laclip_lite.models.transformer import Transformer
from laclip_lite.models.vision import ModifiedResNet, VisionTransformer

__all__ = ["CLIP", "build_model", "count_params", "no_weight_decay_names", "param_groups", "HFTextEncoder",
           "TextTransformer", "Transformer", "ModifiedResNet", "VisionTransformer"]
