"""The four networks: autoencoder, text encoder, latent UNet with cross-attention, and the
attribute classifier. Attention is written with plain matmuls so the ONNX graphs hold MatMul
and Softmax nodes that bitsearch can see and probe."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

import shapes


def norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels // 4), channels)


class Autoencoder(nn.Module):
    """32x32x3 <-> 4x8x8. The decoder is what the pipeline ships (vae_decoder). Full-resolution
    layers are kept thin: they cost the most and the images are flat colours."""

    def __init__(self, latent: int = 4, width: int = 32):
        super().__init__()
        w = width
        self.encoder = nn.Sequential(
            nn.Conv2d(3, w // 2, 3, padding=1), nn.SiLU(),
            nn.Conv2d(w // 2, w, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.SiLU(),
            nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(2 * w, latent, 3, padding=1),
        )
        self.decoder = Decoder(latent, w)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


class Decoder(nn.Module):
    def __init__(self, latent: int, w: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(latent, 2 * w, 3, padding=1), nn.SiLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.SiLU(),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(2 * w, w, 3, padding=1), nn.SiLU(),
            nn.Conv2d(w, w, 3, padding=1), nn.SiLU(),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(w, w // 2, 3, padding=1), nn.SiLU(),
            nn.Conv2d(w // 2, 3, 3, padding=1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head attention of [B, N, C] queries over [B, M, C] keys/values."""
    b, n, c = q.shape
    d = c // heads
    q = q.reshape(b, n, heads, d).transpose(1, 2)
    k = k.reshape(b, -1, heads, d).transpose(1, 2)
    v = v.reshape(b, -1, heads, d).transpose(1, 2)
    weights = torch.softmax(torch.matmul(q, k.transpose(2, 3)) * (1.0 / math.sqrt(d)), dim=-1)
    return torch.matmul(weights, v).transpose(1, 2).reshape(b, n, c)


class Attention(nn.Module):
    def __init__(self, dim: int, context: int | None = None, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(context or dim, dim, bias=False)
        self.to_v = nn.Linear(context or dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        c = x if context is None else context
        return self.to_out(attention(self.to_q(x), self.to_k(c), self.to_v(c), self.heads))


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, dim * mult), nn.GELU(), nn.Linear(dim * mult, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TextEncoder(nn.Module):
    """A small pre-norm transformer; token 0 is always BOS. Output: last_hidden_state."""

    def __init__(self, width: int = 64, layers: int = 3, heads: int = 4):
        super().__init__()
        self.token = nn.Embedding(len(shapes.VOCAB), width)
        self.position = nn.Parameter(torch.randn(shapes.MAX_LENGTH, width) * 0.02)
        self.blocks = nn.ModuleList(TextBlock(width, heads) for _ in range(layers))
        self.final_norm = nn.LayerNorm(width)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.token(input_ids) + self.position
        for block in self.blocks:
            x = block(x)
        return self.final_norm(x)


class TextBlock(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(width), Attention(width, heads=heads)
        self.norm2, self.ff = nn.LayerNorm(width), FeedForward(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ff(self.norm2(x))


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, temb: int):
        super().__init__()
        self.norm1, self.conv1 = norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.time = nn.Linear(temb, cout)
        self.norm2, self.conv2 = norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(F.silu(t))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class SpatialTransformer(nn.Module):
    """Self-attention, cross-attention to the text, feed-forward, on the feature map's pixels."""

    def __init__(self, channels: int, context: int, heads: int = 4):
        super().__init__()
        self.norm = norm(channels)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.norm1, self.attn1 = nn.LayerNorm(channels), Attention(channels, heads=heads)
        self.norm2, self.attn2 = nn.LayerNorm(channels), Attention(channels, context, heads)
        self.norm3, self.ff = nn.LayerNorm(channels), FeedForward(channels)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.proj_in(self.norm(x)).reshape(b, c, h * w).transpose(1, 2)
        tokens = tokens + self.attn1(self.norm1(tokens))
        tokens = tokens + self.attn2(self.norm2(tokens), context)
        tokens = tokens + self.ff(self.norm3(tokens))
        return x + self.proj_out(tokens.transpose(1, 2).reshape(b, c, h, w))


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class UNet(nn.Module):
    """Latent UNet on 4x8x8: two resolutions (8x8, 4x4), a transformer with cross-attention at
    each, epsilon prediction. Inputs as diffusers names them: sample, timestep, encoder_hidden_states."""

    def __init__(self, latent: int = 4, channels: tuple[int, int] = (64, 128), context: int = 64):
        super().__init__()
        c1, c2 = channels
        temb = c1 * 4
        self.time_mlp = nn.Sequential(nn.Linear(c1, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.c1 = c1
        self.conv_in = nn.Conv2d(latent, c1, 3, padding=1)
        self.down1_res, self.down1_attn = ResBlock(c1, c1, temb), SpatialTransformer(c1, context)
        self.downsample = nn.Conv2d(c1, c1, 3, stride=2, padding=1)
        self.down2_res, self.down2_attn = ResBlock(c1, c2, temb), SpatialTransformer(c2, context)
        self.mid_res1, self.mid_attn, self.mid_res2 = (
            ResBlock(c2, c2, temb), SpatialTransformer(c2, context), ResBlock(c2, c2, temb))
        self.up2_res, self.up2_attn = ResBlock(2 * c2, c2, temb), SpatialTransformer(c2, context)
        self.upsample = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c2, c2, 3, padding=1))
        self.up1_res, self.up1_attn = ResBlock(c2 + c1, c1, temb), SpatialTransformer(c1, context)
        self.norm_out = norm(c1)
        self.conv_out = nn.Conv2d(c1, latent, 3, padding=1)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor):
        t = self.time_mlp(timestep_embedding(timestep, self.c1))
        ctx = encoder_hidden_states
        h0 = self.conv_in(sample)
        h1 = self.down1_attn(self.down1_res(h0, t), ctx)
        h2 = self.down2_attn(self.down2_res(self.downsample(h1), t), ctx)
        m = self.mid_res2(self.mid_attn(self.mid_res1(h2, t), ctx), t)
        u2 = self.up2_attn(self.up2_res(torch.cat([m, h2], 1), t), ctx)
        u1 = self.up1_attn(self.up1_res(torch.cat([self.upsample(u2), h1], 1), t), ctx)
        return self.conv_out(F.silu(self.norm_out(u1)))


class Classifier(nn.Module):
    """Per position slot: presence, shape, colour and size logits."""

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1), nn.SiLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.SiLU(), nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.SiLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.SiLU(),
            nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(4 * w * 4 * 4, 256), nn.SiLU(),
        )
        slots = len(shapes.POSITIONS)
        self.heads = nn.ModuleDict({
            "presence": nn.Linear(256, slots * 2),
            "shape": nn.Linear(256, slots * len(shapes.SHAPES)),
            "colour": nn.Linear(256, slots * len(shapes.COLOURS)),
            "size": nn.Linear(256, slots * len(shapes.SIZES)),
        })

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        f = self.features(image)
        slots = len(shapes.POSITIONS)
        return tuple(head(f).reshape(-1, slots, head.out_features // slots) for head in self.heads.values())


HEADS = ("presence", "shape", "colour", "size")
