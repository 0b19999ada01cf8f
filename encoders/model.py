"""CLIP2Video and the mean-pooling baseline as nn.Modules on an open_clip CLIP backbone (no I/O).

Shapes: B videos, T frame slots (12), E = CLIP embed dim (512 for ViT-B/32), K TAB centres,
L caption tokens (32). Both heads return unit vectors; for CLIP2Video each side is
[sqrt(w) * global ; sqrt(1 - w) * TAB] of size 2E, so logit_scale * q . d is the paper's
inference score w * global_logit + (1 - w) * TAB_logit.
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from open_clip.model import CLIP
from open_clip.transformer import LayerNorm, QuickGELU, Transformer
from torch import nn

from .config import TemporalCfg

# The paper's code masks attention by adding -1e6 (not -inf): a row whose keys are all masked
# then attends to every key as if unmasked, and the released weights were trained that way.
MASK_BIAS = -1_000_000.0
# The paper's temporal blocks use CLIP4Clip's TF-style LayerNorm with eps 1e-12.
TEMPORAL_LAYERNORM_EPS = 1e-12


def additive_key_mask(mask: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, L) 0/1 key mask -> (B * heads, L, L) additive mask, batch-major as nn.MultiheadAttention wants.

    The paper's code uses repeat(heads) here, which pairs sample b with the mask of another sample
    once B > 1; repeat_interleave keeps every sample's own mask (the per-video result).
    """
    bias = (1.0 - mask.to(torch.float32)) * MASK_BIAS  # (B, L)
    bias = bias[:, None, :].expand(-1, mask.shape[1], -1)  # (B, L, L): same for every query
    return bias.repeat_interleave(heads, dim=0)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over dim 1 of (B, T, E) with a (B, T) 0/1 mask; an all-masked row averages to 0."""
    weights = mask.to(x.dtype).unsqueeze(-1)
    return (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def build_temporal_transformer(width: int, layers: int) -> Transformer:
    return Transformer(
        width, layers, heads=width // 64, act_layer=QuickGELU,
        norm_layer=partial(LayerNorm, eps=TEMPORAL_LAYERNORM_EPS),
    )


class TemporalDifferenceBlock(nn.Module):
    """TDB: attention over adjacent-frame differences, interleaved between the frame tokens."""

    def __init__(self, width: int):
        super().__init__()
        self.type_embeddings = nn.Embedding(2, width)  # 1: frame token, 0: difference token
        self.difference_attention = build_temporal_transformer(width, layers=1)
        self.difference_norm = nn.LayerNorm(width)  # plain torch eps (1e-5), as the paper

    def forward(self, frames: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor):
        """frames (B, T, E), mask (B, T), positions (T, E)
        -> tokens, positions, types (B, 2T-1, E), token mask (B, 2T-1)."""
        B, T, E = frames.shape
        diffs = frames[:, 1:] - frames[:, :-1] + positions[1:]  # (B, T-1, E)
        heads = self.difference_attention.resblocks[0].attn.num_heads
        diffs = self.difference_attention(diffs, attn_mask=additive_key_mask(mask[:, 1:], heads))
        diffs = 2 * torch.sigmoid(self.difference_norm(diffs)) - 1

        # Interleave f0 d0 f1 d1 ... f(T-1). Difference token i sits after frame i and, as in the
        # paper's code, takes frame i's position and frame i's mask bit.
        tokens = torch.empty(B, 2 * T - 1, E, dtype=frames.dtype, device=frames.device)
        tokens[:, 0::2], tokens[:, 1::2] = frames, diffs
        token_mask = mask.repeat_interleave(2, dim=1)[:, : 2 * T - 1]
        token_positions = positions.repeat_interleave(2, dim=0)[: 2 * T - 1]
        is_frame = torch.ones(2 * T - 1, dtype=torch.long, device=frames.device)
        is_frame[1::2] = 0
        return tokens, token_positions, self.type_embeddings(is_frame), token_mask


class TemporalAlignmentBlock(nn.Module):
    """TAB: soft-assigns tokens to K shared centres and pools the residuals (NetVLAD-like)."""

    def __init__(self, width: int, centers: int):
        super().__init__()
        self.weight_centers = nn.Parameter(torch.empty(centers, width))  # assignment logits
        self.embedding_centers = nn.Parameter(torch.empty(centers, width))  # residual anchors
        nn.init.normal_(self.weight_centers, std=width**-0.5)
        nn.init.normal_(self.embedding_centers, std=width**-0.5)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """tokens (B, N, E), mask (B, N) -> (B, E) unit vector."""
        assignment = F.softmax(tokens @ self.weight_centers.t(), dim=2)  # (B, N, K)
        residuals = tokens.unsqueeze(2) - self.embedding_centers  # (B, N, K, E)
        pooled = (assignment.unsqueeze(3) * residuals * mask[:, :, None, None].to(tokens.dtype)).sum(1)
        pooled = F.normalize(pooled, dim=-1).mean(1)  # (B, E)
        return F.normalize(pooled, dim=-1)


class VideoTextModel(nn.Module):
    """Base: an open_clip CLIP backbone; heads turn frame and token features into search vectors.

    Heads also expose their similarity branches (video_branches / text_branches, unit vectors) and
    branch_weights: the search vector is [sqrt(w_i) * branch_i], so q . d = sum_i w_i q_i . d_i,
    and training weighs each branch's loss by w_i.
    """

    def __init__(self, clip: CLIP):
        super().__init__()
        self.clip = clip

    @property
    def embed_dim(self) -> int:
        return self.clip.text_projection.shape[1]

    def frame_features(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """frames (B, T, 3, S, S) -> CLIP image features (B, T, E).

        Padded slots are zero images that still go through CLIP in the paper's code, and their
        features reach the TDB; a zero image has one fixed feature, so it is encoded once per call.
        """
        B, T = mask.shape
        valid = mask.bool()
        features = torch.empty(B, T, self.embed_dim, dtype=torch.float32, device=frames.device)
        features[valid] = self.clip.encode_image(frames[valid]).float()
        if not valid.all():
            zero_image = torch.zeros_like(frames[:1, 0])
            features[~valid] = self.clip.encode_image(zero_image).float()
        return features

    def token_features(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, L) token ids -> projected hidden states of every token (B, L, E).

        CLIP's causal mask makes these equal to a 77-token run's first L outputs.
        """
        L = input_ids.shape[1]
        x = self.clip.token_embedding(input_ids) + self.clip.positional_embedding[:L]
        x = self.clip.transformer(x, attn_mask=self.clip.attn_mask[:L, :L])
        return (self.clip.ln_final(x) @ self.clip.text_projection).float()

    @staticmethod
    def end_token_features(hidden: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """The end token holds the caption feature; it has the highest id (CLIP's BPE)."""
        return hidden[torch.arange(hidden.shape[0]), input_ids.argmax(dim=-1)]


class MeanPoolCLIP(VideoTextModel):
    """CLIP4Clip meanP: mean of normalised frame features; zero-shot when the CLIP is pretrained."""

    branch_weights = (1.0,)  # one similarity: the caption's end token against the pooled frames

    @property
    def dim(self) -> int:
        return self.embed_dim

    def video_branches(self, frames: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.encode_video(frames, mask),)

    def text_branches(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.encode_text_tokens(input_ids, attention_mask),)

    def encode_video(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        valid = mask.bool()
        features = torch.zeros(*mask.shape, self.embed_dim, device=frames.device)
        features[valid] = F.normalize(self.clip.encode_image(frames[valid]).float(), dim=-1)
        return F.normalize(masked_mean(features, mask), dim=-1)

    def encode_text_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.token_features(input_ids)
        return F.normalize(self.end_token_features(hidden, input_ids), dim=-1)


class CLIP2Video(VideoTextModel):
    """CLIP2Video: global branch (TDB + temporal transformer) and TAB branch, per the paper's code."""

    def __init__(self, clip: CLIP, cfg: TemporalCfg):
        super().__init__(clip)
        width = clip.transformer.width
        if width != self.embed_dim:
            raise ValueError(f"CLIP2Video needs text width == embed dim, got {width} and {self.embed_dim}")
        self.center_weight = cfg.center_weight
        self.frame_positions = nn.Embedding(cfg.max_positions, width)
        self.temporal_transformer = build_temporal_transformer(width, cfg.layers)
        self.difference_block = TemporalDifferenceBlock(width)
        self.alignment_transformer = build_temporal_transformer(width, layers=1)
        self.alignment_block = TemporalAlignmentBlock(width, cfg.centers)

    @property
    def dim(self) -> int:
        return 2 * self.embed_dim

    @property
    def branch_weights(self) -> tuple[float, float]:
        """Weights of the (global, TAB) similarities in the score and in the training loss."""
        return self.center_weight, 1 - self.center_weight

    def _transformer_with_differences(self, transformer: Transformer, frames, mask) -> torch.Tensor:
        """Run the TDB token sequence through `transformer`; return the frame-token outputs (B, T, E)."""
        positions = self.frame_positions.weight[: frames.shape[1]]  # shared by both TDB uses
        tokens, positions, types, token_mask = self.difference_block(frames, mask, positions)
        heads = transformer.resblocks[0].attn.num_heads
        out = transformer(tokens + positions + types, attn_mask=additive_key_mask(token_mask, heads))
        return out[:, 0::2]

    def global_video(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, E) frame features -> (B, E) unit vector (the paper's _similarity_TDB)."""
        out = self._transformer_with_differences(self.temporal_transformer, frames, mask) + frames
        return F.normalize(masked_mean(F.normalize(out, dim=-1), mask), dim=-1)

    def aligned_video(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, E) frame features -> (B, E) TAB unit vector.

        The TAB sees every frame plus a half-rate stream (even slots) refined by the shared TDB and
        a one-layer transformer, as the paper's get_extra_TAB_embedding.
        """
        sparse, sparse_mask = frames[:, 0::2], mask[:, 0::2]
        refined = self._transformer_with_differences(self.alignment_transformer, sparse, sparse_mask) + sparse
        tokens = torch.cat([frames, refined], dim=1)  # (B, T + ceil(T/2), E)
        return self.alignment_block(tokens, torch.cat([mask, sparse_mask], dim=1))

    def video_branches(self, frames: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """frames (B, T, 3, S, S), mask (B, T) -> (global, TAB) unit vectors, (B, E) each."""
        features = self.frame_features(frames, mask)
        return self.global_video(features, mask), self.aligned_video(features, mask)

    def text_branches(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L) tokens -> (global end-token, TAB) unit vectors, (B, E) each."""
        hidden = self.token_features(input_ids)  # (B, L, E)
        global_text = F.normalize(self.end_token_features(hidden, input_ids), dim=-1)
        token_mask = attention_mask.clone()
        token_mask[:, 0] = 0  # the start token takes no part in the TAB
        return global_text, self.alignment_block(hidden, token_mask)

    def encode_video(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self._combine(*self.video_branches(frames, mask))

    def encode_text_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self._combine(*self.text_branches(input_ids, attention_mask))

    def _combine(self, global_vec: torch.Tensor, aligned_vec: torch.Tensor) -> torch.Tensor:
        w = self.center_weight
        return torch.cat([math.sqrt(w) * global_vec, math.sqrt(1 - w) * aligned_vec], dim=-1)
