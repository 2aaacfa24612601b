"""Temporal stability loss without an optical-flow dataset (ReCoNet / Huang et al. 2017 style, synthetic motion).

For a batch of training crops x and the net T:
  warp term   mean over valid pixels of (T(W x) - W T(x))^2, with W a random small affine warp per image
              (rotation, scale, translation, as a camera would move between frames): a stable net commutes with motion;
  noise term  mean (T(x + n) - T(x))^2 with small Gaussian pixel noise n: a stable net ignores sensor noise.
The warps and noise come from a generator seeded by (seed, step), so a resumed run samples exactly what it would have.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class TemporalLoss:
    def __init__(self, seed: int = 0, max_shift: float = 0.03, max_rotation_deg: float = 2.0,
                 max_scale: float = 0.03, noise_std: float = 0.02, noise_weight: float = 1.0):
        self.seed, self.max_shift, self.max_rotation = seed, max_shift, math.radians(max_rotation_deg)
        self.max_scale, self.noise_std, self.noise_weight = max_scale, noise_std, noise_weight

    def generator(self, step: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + step + 7919)

    def random_affine(self, n: int, g: torch.Generator) -> torch.Tensor:
        """(n, 2, 3) affine matrices for F.affine_grid: small rotation, isotropic scale, translation."""
        u = torch.rand(n, 4, generator=g) * 2 - 1
        angle, scale = u[:, 0] * self.max_rotation, 1 + u[:, 1] * self.max_scale
        cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
        tx, ty = u[:, 2] * 2 * self.max_shift, u[:, 3] * 2 * self.max_shift  # grid units: 2 = full width
        return torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)

    @staticmethod
    def warp(x: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Warp (N,C,H,W) by theta; also returns the (N,1,H,W) mask of pixels that came from inside the image."""
        grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
        warped = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        inside = ((grid.abs() <= 1).all(-1, keepdim=True)).permute(0, 3, 1, 2).to(x.dtype)
        return warped, inside

    def __call__(self, net, x: torch.Tensor, out: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        """`out` = net(x) (already computed, with gradients); returns {"temporal", "temporal_warp", "temporal_noise"}."""
        g = self.generator(step)
        theta = self.random_affine(x.shape[0], g).to(x.device)
        x_w, mask = self.warp(x, theta)
        out_w, _ = self.warp(out, theta)
        diff = (net(x_w) - out_w) ** 2 * mask
        warp_term = diff.sum() / (mask.sum() * x.shape[1]).clamp_min(1)
        noise = (torch.randn(x.shape, generator=g) * self.noise_std).to(x.device)
        noise_term = F.mse_loss(net((x + noise).clamp(0, 1)), out)
        total = warp_term + self.noise_weight * noise_term
        return {"temporal": total, "temporal_warp": warp_term, "temporal_noise": noise_term}
