"""CLIP2Video against the official code's outputs, checkpoint loading, and the model API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch

from encoders import CheckpointError, create_model, list_models, tokenize

FIXTURES = Path(__file__).parent.parent / "fixtures"


@pytest.fixture(scope="module")
def reference() -> dict:
    """Outputs of the official CLIP2Video code on a tiny random model (make_official_reference.py)."""
    return torch.load(FIXTURES / "clip2video_reference.pt", weights_only=True)


@pytest.fixture(scope="module")
def official_checkpoint(reference, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "pytorch_model.bin.2"
    torch.save(reference["state_dict"], path)
    return path


@pytest.fixture(scope="module")
def official_model(official_checkpoint):
    return create_model("clip2video", checkpoint=official_checkpoint, device="cpu")


def test_official_checkpoint_geometry_is_read_from_shapes(official_model, reference):
    cfg = reference["config"]
    assert official_model.dim == 2 * cfg["embed_dim"]
    assert official_model.image_size == cfg["image_resolution"]
    assert official_model.num_frames == cfg["max_frames"]
    heads = official_model.module.temporal_transformer.resblocks[0].attn.num_heads
    assert heads == cfg["num_heads_text"] == 3
    assert len(official_model.module.temporal_transformer.resblocks) == cfg["cross_num_hidden_layers"]


def test_logits_match_official_per_video_outputs(official_model, reference):
    """3, 7, 12 (and 1, 2, 5) valid frames, 3 attention heads, all videos in one batch."""
    text = official_model.encode_text_tokens(reference["input_ids"], reference["attention_mask"])
    video = official_model.encode_video(reference["video"], reference["video_mask"])
    logits = official_model.logit_scale * text @ video.T
    np.testing.assert_allclose(logits, reference["logits"].numpy(), atol=1e-4, rtol=0)
    # The official batched path mixes masks across samples; ours must not reproduce that.
    assert np.abs(logits - reference["logits_batched_official"].numpy()).max() > 1e-2


def test_each_video_is_independent_of_its_batch(official_model, reference):
    batched = official_model.encode_video(reference["video"], reference["video_mask"])
    for i in range(len(batched)):
        alone = official_model.encode_video(reference["video"][i : i + 1], reference["video_mask"][i : i + 1])
        np.testing.assert_allclose(alone[0], batched[i], atol=1e-5)


def test_padded_slots_are_zero_images(official_model, reference):
    """The paper's padded slots are zero images; whatever a caller leaves there is ignored."""
    frames, mask = reference["video"].clone(), reference["video_mask"]
    frames[mask == 0] = torch.randn_like(frames[mask == 0])
    np.testing.assert_allclose(
        official_model.encode_video(frames, mask), official_model.encode_video(reference["video"], mask), atol=1e-6
    )


def test_vectors_are_unit_float32(official_model, tiny_model, reference):
    video = official_model.encode_video(reference["video"], reference["video_mask"])
    text = tiny_model.encode_text(["a man is playing a guitar", ""])
    for vectors in (video, text):
        assert vectors.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_captions_are_encoded_as_the_paper_pads_them_whatever_their_batch(tiny_model):
    """encode_text computes no position past the batch's longest caption; the vectors are those of
    the paper's full 32-token input, a caption alone or beside longer ones."""
    captions = ["a dog", "a man is playing a guitar on a stage in front of a crowd", "",
                " ".join(["word"] * 40)]  # cut at 32 tokens, as the paper's tokenizer does
    for model in (tiny_model, create_model("demo", device="cpu")):
        padded = model.encode_text_tokens(*tokenize(captions, model.cfg.max_words))
        np.testing.assert_allclose(model.encode_text(captions), padded, atol=1e-5)
        np.testing.assert_allclose(model.encode_text(captions[:1]), padded[:1], atol=1e-5)


def test_fp16_release_tensors_load_as_fp32(official_model, reference):
    assert any(t.dtype == torch.float16 for t in reference["state_dict"].values())
    assert all(p.dtype == torch.float32 for p in official_model.module.parameters())


def _vitb32_state_dict() -> dict:
    spec = json.loads((FIXTURES / "clip2video_vitb32_keys.json").read_text())
    generator = torch.Generator().manual_seed(0)
    return {
        key: (torch.randn(shape, generator=generator) * 0.02).to(getattr(torch, spec["dtypes"][key]))
        for key, shape in spec["shapes"].items()
    }


def test_vitb32_release_state_dict_loads_without_missing_or_unexpected_keys(tmp_path):
    state = _vitb32_state_dict()
    assert len(state) == 380
    path = tmp_path / "pytorch_model.bin.2"
    torch.save(state, path)
    model = create_model("clip2video", checkpoint=path, device="cpu")
    assert model.dim == 1024 and model.image_size == 224 and model.num_frames == 12
    assert model.module.clip.visual.transformer.resblocks[0].attn.num_heads == 12
    assert model.module.temporal_transformer.resblocks[0].attn.num_heads == 8
    np.testing.assert_allclose(
        model.module.state_dict()["clip.visual.proj"].numpy(), state["clip.visual.proj"].float().numpy()
    )


@pytest.mark.parametrize("change", ["missing", "unexpected", "shape"])
def test_checkpoint_key_problems_name_the_key(reference, tmp_path, change):
    state = dict(reference["state_dict"])
    if change == "missing":
        del state["actionClip.resblocks.0.ln_2.bias"]
        expected = "missing key 'actionClip.resblocks.0.ln_2.bias'"
    elif change == "unexpected":
        state["frame2t_projection"] = torch.zeros(3)
        expected = "unexpected key 'frame2t_projection'"
    else:
        state["type_position_embeddings.weight"] = torch.zeros(3, 192)
        expected = "type_position_embeddings.weight (3, 192) != (2, 192)"
    path = tmp_path / "broken.bin"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        create_model("clip2video", checkpoint=path, device="cpu")


def test_unreadable_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "not_a_checkpoint.bin"
    path.write_text("hello")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        create_model("clip2video", checkpoint=path, device="cpu")


def test_temporal_only_checkpoint_takes_clip_from_a_local_backbone_file(reference, tmp_path, official_model):
    """A checkpoint without clip.* keys gets its CLIP from open_clip: a pretrained tag or a local file."""
    state = reference["state_dict"]
    torch.save({k: v for k, v in state.items() if not k.startswith("clip.")}, tmp_path / "temporal.bin")
    torch.save({k[len("clip."):]: v.float() for k, v in state.items() if k.startswith("clip.")}, tmp_path / "clip.pt")
    cfg = reference["config"]
    architecture = {
        "embed_dim": cfg["embed_dim"], "quick_gelu": True,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 128, "patch_size": 8},
        "text_cfg": {"context_length": 77, "vocab_size": 1000, "width": 192, "heads": 3, "layers": 1},
    }
    (tmp_path / "tiny-official.json").write_text(json.dumps(architecture))
    open_clip.add_model_config(tmp_path / "tiny-official.json")

    model = create_model(
        "clip2video", checkpoint=tmp_path / "temporal.bin", device="cpu",
        backbone="tiny-official", backbone_pretrained=str(tmp_path / "clip.pt"),
    )
    text = model.encode_text_tokens(reference["input_ids"], reference["attention_mask"])
    video = model.encode_video(reference["video"], reference["video_mask"])
    np.testing.assert_allclose(model.logit_scale * text @ video.T, reference["logits"].numpy(), atol=1e-4)
    assert model.fingerprint == official_model.fingerprint


def test_clip2video_without_checkpoint_points_to_the_baseline():
    with pytest.raises(ValueError, match="clip-meanp"):
        create_model("clip2video", device="cpu")


def test_unknown_model_lists_the_available_ones():
    with pytest.raises(ValueError, match="Available: clip-meanp, clip2video, demo, tiny"):
        create_model("clip3video")
    assert {"clip2video", "clip-meanp", "demo", "tiny"} <= set(list_models())


def test_tiny_model_is_identical_in_every_process(tiny_model):
    code = "from encoders import create_model; print(create_model('tiny', device='cpu').fingerprint)"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == tiny_model.fingerprint


def test_fingerprint_changes_with_weights_and_sampling(official_checkpoint, official_model):
    from encoders import SamplingCfg

    resampled = create_model("clip2video", checkpoint=official_checkpoint, device="cpu",
                           sampling=SamplingCfg(feature_framerate=1))
    assert resampled.fingerprint != official_model.fingerprint
    with torch.no_grad():
        resampled.module.alignment_block.weight_centers[0, 0] += 1e-3
    from encoders.encoder import compute_fingerprint

    assert compute_fingerprint(resampled.module, resampled.cfg) != resampled.fingerprint


def test_meanp_is_the_mean_of_normalised_frame_features(official_checkpoint, reference):
    """clip-meanp on the same CLIP: masked mean of unit frame features, renormalised (CLIP4Clip meanP)."""
    clip_only = {k: v for k, v in reference["state_dict"].items() if k.startswith("clip.")}
    path = official_checkpoint.parent / "clip_only.bin"
    torch.save(clip_only, path)
    model = create_model("clip-meanp", checkpoint=path, device="cpu")
    frames, mask = reference["video"], reference["video_mask"]
    video = model.encode_video(frames, mask)
    features = torch.nn.functional.normalize(reference["visual_frames"], dim=-1)
    expected = torch.stack([features[i, : int(m.sum())].mean(0) for i, m in enumerate(mask)])
    np.testing.assert_allclose(video, torch.nn.functional.normalize(expected, dim=-1).numpy(), atol=1e-5)
    text = model.encode_text_tokens(reference["input_ids"], reference["attention_mask"])
    expected_text = torch.nn.functional.normalize(reference["text_global"], dim=-1).numpy()
    np.testing.assert_allclose(text, expected_text, atol=1e-5)


@pytest.mark.parametrize("head", ["clip2video", "meanp"])
def test_branches_weighted_by_branch_weights_give_the_search_score(reference, head):
    """What training optimises (sum of w_i times each branch's similarity) is what search ranks by."""
    module = create_model("tiny", device="cpu", head=head).module
    frames, video_mask = reference["video"], reference["video_mask"]  # 32 px, as tiny's
    ids, mask = reference["input_ids"], reference["attention_mask"]
    with torch.no_grad():
        score = module.encode_text_tokens(ids, mask) @ module.encode_video(frames, video_mask).T
        texts, videos = module.text_branches(ids, mask), module.video_branches(frames, video_mask)
        weighted = sum(w * text @ video.T for w, text, video in zip(module.branch_weights, texts, videos))
    torch.testing.assert_close(weighted, score, atol=1e-6, rtol=0)


@pytest.mark.parametrize("half", [False, True])
def test_save_official_writes_a_checkpoint_load_model_reads_back(official_model, reference, tmp_path, half):
    from encoders.checkpoint import save_official

    path = tmp_path / "pytorch_model.bin.0"
    save_official(official_model.module.state_dict(), path, half=half)
    state = torch.load(path, weights_only=True)
    assert set(state) == set(reference["state_dict"])
    assert (state["clip.visual.proj"].dtype == torch.float16) == half
    again = create_model("clip2video", checkpoint=path, device="cpu")
    video = reference["video"], reference["video_mask"]
    expected = official_model.encode_video(*video)
    np.testing.assert_allclose(again.encode_video(*video), expected, atol=1e-2 if half else 0)


def test_seek_mode_is_part_of_the_fingerprint_and_keeps_the_rest_of_the_sampling(tiny_model):
    keyframe = create_model("tiny", device="cpu", sampling={"seek": "keyframe"})
    assert keyframe.fingerprint != tiny_model.fingerprint
    assert keyframe.sampling.feature_framerate == tiny_model.sampling.feature_framerate
    assert keyframe.spec == {"name": "tiny", "checkpoint": None, "sampling": {"seek": "keyframe"}}
    # exact, the default, leaves fingerprints as they were before the field existed
    assert create_model("tiny", device="cpu", sampling={"seek": "exact"}).fingerprint == tiny_model.fingerprint
