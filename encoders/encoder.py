"""VideoTextEncoder: a loaded model with its tokenizer, preprocessing, device and fingerprint."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json

import numpy as np
import open_clip
import torch

from .config import ModelCfg, PreprocessCfg
from .model import VideoTextModel
from .preprocess import stack_clips


def compute_fingerprint(module: torch.nn.Module, cfg: ModelCfg) -> str:
    """A stable hash of what decides the vectors: the head, temporal and sampling settings,
    caption length and every weight; not where the weights came from."""
    digest = hashlib.blake2b(digest_size=16)
    settings = {k: v for k, v in cfg.to_dict().items() if k in ("head", "temporal", "sampling", "max_words")}
    if settings["sampling"]["seek"] == "exact":  # the default leaves fingerprints made before it unchanged
        del settings["sampling"]["seek"]
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def tokenize(texts: list[str], max_words: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's caption tokens: CLIP BPE (ftfy, HTML unescape, lower case), start token,
    at most max_words - 2 word pieces, end token, zero padding. Returns ids and 0/1 mask (B, L).
    """
    ids = open_clip.tokenize(list(texts), context_length=max_words)
    # Real tokens end at the end token, the highest id. (Id 0 is also "!", so the mask cannot be
    # ids != 0.) Unlike the paper's tokenizer, open_clip reads a literal "<|endoftext|>" in a
    # caption as text, so a caption cannot inject control tokens.
    mask = (torch.arange(max_words) <= ids.argmax(dim=1, keepdim=True)).long()
    return ids, mask


class VideoTextEncoder:
    """What callers use: encode_video / encode_text return unit-length float32 numpy rows."""

    def __init__(
        self, module: VideoTextModel, cfg: ModelCfg, spec: dict, device: torch.device,
        autocast_dtype: torch.dtype | None,
    ):
        self.module = module.eval().to(device)
        self.cfg = cfg
        self.spec = spec  # create_model(**spec) makes this model again: name, checkpoint, overrides
        self.device = device
        self.autocast_dtype = autocast_dtype
        visual_cfg = open_clip.get_model_preprocess_cfg(module.clip)
        size = visual_cfg.get("size", module.clip.visual.image_size)
        self.preprocess = PreprocessCfg(
            image_size=size[0] if isinstance(size, (tuple, list)) else int(size),
            mean=tuple(visual_cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)),
            std=tuple(visual_cfg.get("std", open_clip.OPENAI_DATASET_STD)),
        )

    @functools.cached_property
    def fingerprint(self) -> str:
        """A stable hash of weights and settings; computed on first use (it reads every weight)."""
        return compute_fingerprint(self.module, self.cfg)

    @property
    def dim(self) -> int:
        return self.module.dim

    @property
    def image_size(self) -> int:
        return self.preprocess.image_size

    @property
    def num_frames(self) -> int:
        return self.cfg.sampling.max_frames

    @property
    def sampling(self):
        return self.cfg.sampling

    @property
    def logit_scale(self) -> float:
        return float(self.module.clip.logit_scale.detach().exp())

    @property
    def record(self) -> dict:
        """What makes these vectors, to keep beside them: create_model(**record["spec"]) makes this model
        again, and its fingerprint says whether it is still the same (encoders/recorded.py)."""
        return {"spec": self.spec, "fingerprint": self.fingerprint, "dim": self.dim,
                "logit_scale": self.logit_scale, "config": self.cfg.to_dict()}

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    @torch.inference_mode()
    def encode_video(self, frames, mask) -> np.ndarray:
        """frames (B, T, 3, S, S) preprocessed float, mask (B, T) 0/1 -> (B, D) unit float32."""
        frames = torch.as_tensor(frames).to(self.device, torch.float32, non_blocking=True)
        mask = torch.as_tensor(mask).to(self.device)
        with self._autocast():
            vectors = self.module.encode_video(frames, mask)
        return vectors.float().cpu().numpy()

    def encode_clips(self, clips: list) -> np.ndarray:
        """uint8 clips (n_i <= num_frames, 3, S, S) from decode_video -> (B, D); pads and normalises
        on the model's device, so only uint8 frames cross to it."""
        return self.encode_video(*stack_clips(clips, self.num_frames, self.preprocess, self.device))

    @torch.inference_mode()
    def encode_text_tokens(self, input_ids, attention_mask) -> np.ndarray:
        input_ids = torch.as_tensor(input_ids).to(self.device)
        attention_mask = torch.as_tensor(attention_mask).to(self.device)
        with self._autocast():
            vectors = self.module.encode_text_tokens(input_ids, attention_mask)
        return vectors.float().cpu().numpy()

    def encode_text(self, texts: list[str]) -> np.ndarray:
        """Captions -> (B, D) unit float32, tokenized as the paper (32 tokens)."""
        if isinstance(texts, str):
            raise TypeError("encode_text takes a list of strings")
        ids, mask = tokenize(texts, self.cfg.max_words)
        # Positions past the longest caption's end token hold padding only: the causal mask hides
        # them from every real token and the TAB masks them out, so they are not computed (a
        # six-word caption is 9 tokens of 32: a third of the text tower's work).
        length = int(mask.sum(dim=1).max())
        return self.encode_text_tokens(ids[:, :length], mask[:, :length])
