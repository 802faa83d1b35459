"""Probes on frozen embeddings: linear, attentive, prototypical and binarized prototypical.

What this file holds
- `LinearProbe`: mean over tokens → standardise (train statistics) → one linear layer; the
  classic "linear evaluation" of a frozen encoder.
- `AttentiveProbe`: a few learned queries cross-attend to the (layer-normed) tokens with multi-head
  attention, then layer norm and a linear head (attentive probing as in V-JEPA / data2vec 2).
- `PrototypicalProbe`: K learned prototypes per class; the logit of class c is a learned
  temperature times the maximum cosine similarity over tokens and the class's prototypes.
- `BinarizedPrototypicalProbe` ("protobin"): P class-agnostic prototypes binarized with sign() and
  a straight-through estimator; each prototype scores the maximum cosine similarity over all
  tokens; a linear head maps the P scores to classes. After Rauch et al. 2025, "Unmute the Patch
  Tokens: Rethinking Probing in Multi-Label Audio Classification" (arXiv 2509.24901), whose point is
  that global pooling is a bottleneck for multi-label audio.
- metrics: `accuracy`, `average_precision`, `mean_average_precision` (implemented here, no
  scikit-learn), and `make_probe(name, **kwargs)` / `PROBES`.

Conventions (scikit-learn estimators): hyper-parameters in `__init__`, nothing learned until `fit`,
`fit` returns self, learned values are trailing-underscore attributes. Inputs are token embeddings
X of shape (N, T, D) (numpy or torch; (N, D) is read as T = 1) and labels y of shape (N,) (integer
class indices: multiclass) or (N, C) in {0, 1} (multi-hot: multilabel). Training is seeded and
deterministic on CPU; the global torch RNG state is left as it was.

Model selection. Without validation data a probe trains for `max_epochs` and keeps the last
weights. With `X_valid, y_valid` it evaluates the valid score (accuracy or mAP) after every epoch,
keeps the best epoch's weights (earliest on ties) and, if `patience` is set, stops after `patience`
epochs without improvement. If `lr_grid` and/or `weight_decay_grid` are given (valid data is then
required) every (lr, weight_decay) pair is trained from the same seed and the pair with the best
valid score wins (earliest in grid order on ties); all pairs are recorded in `search_`.
`DEFAULT_GRID` and `DEFAULT_PATIENCE` are the evaluation protocol's choices (`audiorank.evaluate`).
"""

from __future__ import annotations

import copy
import inspect
import math
from typing import Any

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from .metrics import accuracy, average_precision, mean_average_precision

PROBES: tuple[str, ...] = ("linear", "attentive", "prototypical", "protobin")
TASKS: tuple[str, ...] = ("multiclass", "multilabel")
# The evaluation protocol's grid (chosen on valid per probe and layer). Laptop events task, random vit-tiny:
# lr moved valid accuracy by up to 0.4 (prototypical 0.41 at 1e-3, 0.81 at 3e-2), weight decay 0 vs 5e-2 by ≤ 0.03.
DEFAULT_GRID: dict[str, dict[str, tuple[float, ...]]] = {
    name: {"lr_grid": lrs, "weight_decay_grid": (0.0, 5e-2)} for name, lrs in (
        ("linear", (3e-3, 3e-2)), ("attentive", (1e-3, 1e-2)), ("prototypical", (3e-3, 3e-2)), ("protobin", (3e-3, 3e-2)))}
DEFAULT_PATIENCE = 10  # epochs without a better valid score before the protocol stops a probe


# ----------------------------------------------------------------------------------------------
# input validation


def _as_tokens(X: Any, name: str = "X") -> torch.Tensor:
    """(N, T, D) float32 CPU tensor from numpy/torch (N, T, D) or (N, D); checks finiteness."""
    if isinstance(X, torch.Tensor):
        t = X.detach().to("cpu", torch.float32)
    else:
        try:
            t = torch.as_tensor(np.asarray(X, dtype=np.float32))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{name} must be a numeric array of shape (N, T, D) or (N, D): {e}")
    if t.ndim == 2:
        t = t[:, None, :]  # (N, 1, D)
    if t.ndim != 3:
        raise ValueError(f"{name} must have shape (N, T, D) or (N, D), got {tuple(t.shape)}")
    if t.shape[0] == 0 or t.shape[1] == 0 or t.shape[2] == 0:
        raise ValueError(f"{name} must be non-empty in every axis, got {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or Inf values")
    return t


def _infer_task(y: np.ndarray, task: str | None, name: str = "y") -> str:
    if task is not None and task not in TASKS:
        raise ValueError(f"task must be one of {TASKS} or None, got {task!r}")
    shape_task = {1: "multiclass", 2: "multilabel"}.get(y.ndim)
    if shape_task is None:
        raise ValueError(f"{name} must have shape (N,) (class indices) or (N, C) (multi-hot), "
                         f"got {y.shape}")
    if task is not None and task != shape_task:
        raise ValueError(f"task={task!r} expects {name} of shape "
                         f"{'(N,)' if task == 'multiclass' else '(N, C)'}, got {y.shape}")
    return shape_task


def _as_labels(y: Any, task: str, n: int, n_classes: int | None, name: str = "y") -> torch.Tensor:
    """Validated labels: int64 (N,) for multiclass, float32 (N, C) for multilabel."""
    a = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if a.shape[0] != n:
        raise ValueError(f"{name} has {a.shape[0]} samples but X has {n}")
    if a.dtype == bool:
        a = a.astype(np.int64)
    if not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or Inf values")
    if task == "multiclass":
        if a.ndim != 1:
            raise ValueError(f"multiclass {name} must have shape (N,), got {a.shape}")
        if np.any(a != np.round(a)):
            raise ValueError(f"multiclass {name} must hold integer class indices")
        a = a.astype(np.int64)
        if a.min() < 0:
            raise ValueError(f"{name} holds a negative class index ({a.min()})")
        if n_classes is not None and a.max() >= n_classes:
            raise ValueError(f"{name} holds class index {a.max()} out of range "
                             f"[0, {n_classes}) for this probe")
        return torch.as_tensor(a)
    if a.ndim != 2:
        raise ValueError(f"multilabel {name} must have shape (N, C), got {a.shape}")
    if not np.all((a == 0) | (a == 1)):
        raise ValueError(f"multilabel {name} must be multi-hot with values in {{0, 1}}")
    if n_classes is not None and a.shape[1] != n_classes:
        raise ValueError(f"{name} has {a.shape[1]} classes but the probe was fitted on {n_classes}")
    return torch.as_tensor(a.astype(np.float32))


# ----------------------------------------------------------------------------------------------
# modules: each maps standardised tokens (B, T, D) to logits (B, C)


class _LinearHead(nn.Module):
    def __init__(self, d: int, c: int):
        super().__init__()
        self.fc = nn.Linear(d, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, D) pooled, standardised
        return self.fc(x)


class _AttentiveHead(nn.Module):
    def __init__(self, d: int, c: int, num_queries: int, num_heads: int):
        super().__init__()
        self.query = nn.Parameter(torch.randn(num_queries, d) * 0.02)  # (Q, D)
        self.ln_kv = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, num_heads, batch_first=True)
        self.ln_out = nn.LayerNorm(d)
        self.fc = nn.Linear(num_queries * d, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, T, D)
        kv = self.ln_kv(x)
        q = self.query.unsqueeze(0).expand(x.shape[0], -1, -1)  # (B, Q, D)
        out, _ = self.attn(q, kv, kv, need_weights=False)  # (B, Q, D)
        return self.fc(self.ln_out(out).flatten(1))  # (B, Q*D) -> (B, C)


class _PrototypicalHead(nn.Module):
    def __init__(self, d: int, c: int, k: int, init: torch.Tensor, temperature: float):
        super().__init__()
        self.c, self.k = c, k
        self.prototypes = nn.Parameter(init.clone())  # (C*K, D), class-major
        self.log_scale = nn.Parameter(torch.tensor(math.log(temperature)))
        self.bias = nn.Parameter(torch.zeros(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, T, D)
        sim = F.normalize(x, dim=-1) @ F.normalize(self.prototypes, dim=-1).T  # (B, T, C*K)
        sim = sim.amax(dim=1).view(-1, self.c, self.k).amax(dim=-1)  # (B, C)
        return self.log_scale.exp() * sim + self.bias


def _sign_ste(p: torch.Tensor) -> torch.Tensor:
    """sign(p) ∈ {−1, +1} forward (0 ↦ +1); identity gradient, clipped to |p| ≤ 1, backward."""
    hard = torch.where(p >= 0, torch.ones_like(p), -torch.ones_like(p))
    soft = p.clamp(-1.0, 1.0)
    return soft + (hard - soft).detach()


class _BinarizedPrototypicalHead(nn.Module):
    def __init__(self, d: int, c: int, p: int, init: torch.Tensor):
        super().__init__()
        self.prototypes = nn.Parameter(init.clone())  # (P, D) latent real weights
        self.norm = nn.BatchNorm1d(p, affine=False)  # scores live in a narrow band: standardise
        self.fc = nn.Linear(p, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, T, D)
        proto = F.normalize(_sign_ste(self.prototypes), dim=-1)  # (P, D), binary / sqrt(D)
        sim = F.normalize(x, dim=-1) @ proto.T  # (B, T, P)
        scores = sim.amax(dim=1)  # (B, P): max cosine similarity over tokens
        return self.fc(self.norm(scores))  # (B, C)


# ----------------------------------------------------------------------------------------------
# estimators


def _batches(perm: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Minibatches of `perm`; a trailing batch of one sample joins the previous one (batch norm)."""
    out = list(perm.split(batch_size))
    if len(out) > 1 and out[-1].numel() == 1:
        out[-2:] = [torch.cat(out[-2:])]
    return out


class _BaseProbe:
    """Shared fit / predict / score; subclasses build the module (`_build`) and pool (`_prep`).

    Common hyper-parameters: `task` ("multiclass" | "multilabel" | None: from y's shape),
    `n_classes` (multiclass only; None: max label + 1), `max_epochs`, `batch_size`, `lr`,
    `weight_decay` (AdamW; 0 is plain Adam), `lr_grid` / `weight_decay_grid` (grid searched on
    valid data), `patience` (early stopping on the valid score; None: run all epochs),
    `standardize` (per-dimension train mean/std), `seed`, `device`.
    Learned: `module_`, `history_` ({"train_loss": [...], "valid_score": [...]} per epoch, NaN
    scores without valid data), `best_epoch_` (1-based), `best_score_`, `lr_`, `weight_decay_`,
    `search_` (one dict per grid point), `task_`, `n_classes_`, `n_features_`, `mean_`, `scale_`,
    `n_parameters_`.
    """

    _pooled = False  # True: the module sees the token mean (B, D) instead of tokens (B, T, D)

    def __init__(self, *, task: str | None = None, n_classes: int | None = None,
                 max_epochs: int = 100, batch_size: int = 64,
                 lr: float = 1e-3, weight_decay: float = 0.0,
                 lr_grid: tuple[float, ...] | None = None,
                 weight_decay_grid: tuple[float, ...] | None = None,
                 patience: int | None = None, standardize: bool = True, seed: int = 0,
                 device: str | torch.device = "cpu"):
        self.task = task
        self.n_classes = n_classes
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.lr_grid = lr_grid
        self.weight_decay_grid = weight_decay_grid
        self.patience = patience
        self.standardize = standardize
        self.seed = seed
        self.device = device

    # --- scikit-learn conveniences -------------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        names: list[str] = []
        for klass in cls.__mro__:
            if "__init__" in vars(klass):
                for p in inspect.signature(klass.__init__).parameters.values():
                    if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) \
                            and p.name not in names:
                        names.append(p.name)
        return names

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Hyper-parameters as given to `__init__`."""
        return {k: getattr(self, k) for k in self._param_names()}

    def set_params(self, **params: Any) -> "_BaseProbe":
        valid = set(self._param_names())
        for k, v in params.items():
            if k not in valid:
                raise ValueError(f"unknown parameter {k!r} for {type(self).__name__}")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # --- subclass hooks ---------------------------------------------------------------------------
    def _build(self, d: int, c: int, X: torch.Tensor, y: torch.Tensor) -> nn.Module:
        raise NotImplementedError

    def _check_params(self) -> None:
        for name in ("max_epochs", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.patience is not None and (not isinstance(self.patience, (int, np.integer))
                                          or self.patience < 1):
            raise ValueError(f"patience must be a positive integer or None, got {self.patience!r}")
        for lr in (self.lr, *(self.lr_grid or ())):
            if not (np.isfinite(lr) and lr > 0):
                raise ValueError(f"learning rates must be positive and finite, got {lr!r}")
        for wd in (self.weight_decay, *(self.weight_decay_grid or ())):
            if not (np.isfinite(wd) and wd >= 0):
                raise ValueError(f"weight decays must be non-negative and finite, got {wd!r}")

    # --- data preparation -----------------------------------------------------------------------
    def _prep(self, X: torch.Tensor) -> torch.Tensor:
        """Standardise with train statistics; mean-pool first for pooled probes."""
        if X.shape[2] != self.n_features_:
            raise ValueError(f"X has {X.shape[2]} features per token but the probe was fitted "
                             f"on {self.n_features_}")
        if self._pooled:
            X = X.mean(dim=1)  # (N, D)
        return (X - self.mean_) / self.scale_

    def _set_stats(self, X: torch.Tensor) -> None:
        flat = X.mean(dim=1) if self._pooled else X.reshape(-1, X.shape[2])  # (M, D)
        if self.standardize:
            mean = flat.double().mean(0)
            std = flat.double().std(0, unbiased=False)
            std = torch.where(std > 1e-12, std, torch.ones_like(std))
            self.mean_, self.scale_ = mean.float(), std.float()
        else:
            self.mean_ = torch.zeros(X.shape[2])
            self.scale_ = torch.ones(X.shape[2])

    # --- training ---------------------------------------------------------------------------------
    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.task_ == "multiclass":
            return F.cross_entropy(logits, y)
        return F.binary_cross_entropy_with_logits(logits, y)

    def _metric(self, y: torch.Tensor, logits: torch.Tensor) -> float:
        if self.task_ == "multiclass":
            return accuracy(y.numpy(), logits.argmax(1).numpy())
        return mean_average_precision(y.numpy(), logits.numpy())

    @torch.no_grad()
    def _logits(self, module: nn.Module, Z: torch.Tensor) -> torch.Tensor:
        module.eval()
        dev = torch.device(self.device)
        out = [module(Z[i:i + self.batch_size].to(dev)).float().cpu()
               for i in range(0, Z.shape[0], self.batch_size)]
        return torch.cat(out)

    def _train_one(self, Z: torch.Tensor, y: torch.Tensor, Zv: torch.Tensor | None,
                   yv: torch.Tensor | None, lr: float, wd: float):
        dev = torch.device(self.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            module = self._build(self.n_features_, self.n_classes_, Z, y).to(dev)
        gen = torch.Generator().manual_seed(self.seed)
        opt = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=wd)
        history: dict[str, list[float]] = {"train_loss": [], "valid_score": []}
        best_score, best_epoch, best_state, stale = -math.inf, 0, None, 0
        n = Z.shape[0]
        for epoch in range(1, self.max_epochs + 1):
            module.train()
            perm = torch.randperm(n, generator=gen)
            total = 0.0
            for idx in _batches(perm, self.batch_size):
                loss = self._loss(module(Z[idx].to(dev)), y[idx].to(dev))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * idx.numel()
            train_loss = total / n
            if not math.isfinite(train_loss):
                raise RuntimeError(f"training diverged at epoch {epoch} (loss {train_loss}); "
                                   f"lower lr={lr}")
            history["train_loss"].append(train_loss)
            if Zv is None:
                history["valid_score"].append(float("nan"))
                best_epoch = epoch
                continue
            score = self._metric(yv, self._logits(module, Zv))
            history["valid_score"].append(score)
            if score > best_score:
                best_score, best_epoch, stale = score, epoch, 0
                best_state = copy.deepcopy(module.state_dict())
            else:
                stale += 1
                if self.patience is not None and stale >= self.patience:
                    break
        if best_state is not None:
            module.load_state_dict(best_state)
        module.eval()
        return module, history, best_epoch, best_score

    def fit(self, X_train: Any, y_train: Any, X_valid: Any = None,
            y_valid: Any = None) -> "_BaseProbe":
        """Train on (X_train, y_train); with valid data, keep the best epoch (and grid point)."""
        self._check_params()
        X = _as_tokens(X_train, "X_train")
        y_np = y_train.detach().cpu().numpy() if isinstance(y_train, torch.Tensor) \
            else np.asarray(y_train)
        task = _infer_task(y_np, self.task, "y_train")
        if self.n_classes is not None and (not isinstance(self.n_classes, (int, np.integer))
                                           or self.n_classes < 1):
            raise ValueError(f"n_classes must be a positive integer or None, got {self.n_classes!r}")
        y = _as_labels(y_np, task, X.shape[0], self.n_classes, "y_train")
        if (X_valid is None) != (y_valid is None):
            raise ValueError("give both X_valid and y_valid, or neither")
        if X_valid is None and (self.lr_grid or self.weight_decay_grid):
            raise ValueError("lr_grid / weight_decay_grid need X_valid and y_valid to select on")
        n_classes = int(y.shape[1]) if task == "multilabel" else (
            self.n_classes if self.n_classes is not None else int(y.max()) + 1)
        if task == "multiclass" and n_classes < 2:
            raise ValueError("multiclass y_train must contain at least two classes")

        self.task_ = task
        self.n_classes_ = n_classes
        self.n_features_ = int(X.shape[2])
        self._set_stats(X)
        Z = self._prep(X)
        Zv = yv = None
        if X_valid is not None:
            Xv = _as_tokens(X_valid, "X_valid")
            yv_np = y_valid.detach().cpu().numpy() if isinstance(y_valid, torch.Tensor) \
                else np.asarray(y_valid)
            _infer_task(yv_np, task, "y_valid")
            yv = _as_labels(yv_np, task, Xv.shape[0], n_classes, "y_valid")
            if task == "multilabel" and not yv.any():
                raise ValueError("y_valid has no positive label: the valid mAP is undefined")
            Zv = self._prep(Xv)

        lrs = tuple(self.lr_grid) if self.lr_grid else (self.lr,)
        wds = tuple(self.weight_decay_grid) if self.weight_decay_grid else (self.weight_decay,)
        search, best = [], None
        for lr in lrs:
            for wd in wds:
                module, hist, epoch, score = self._train_one(Z, y, Zv, yv, lr, wd)
                search.append({"lr": lr, "weight_decay": wd, "best_epoch": epoch,
                               "valid_score": score if Zv is not None else float("nan")})
                if best is None or score > best[3]:
                    best = (module, hist, epoch, score, lr, wd)
        module, hist, epoch, score, lr, wd = best
        self.module_ = module
        self.history_ = hist
        self.best_epoch_ = epoch
        self.best_score_ = score if Zv is not None else float("nan")
        self.lr_ = lr
        self.weight_decay_ = wd
        self.search_ = search
        self.n_parameters_ = sum(p.numel() for p in module.parameters())
        return self

    # --- inference --------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "module_"):
            raise RuntimeError(f"this {type(self).__name__} is not fitted yet: call fit first")

    def decision_function(self, X: Any) -> np.ndarray:
        """Raw logits, (N, C)."""
        self._check_fitted()
        return self._logits(self.module_, self._prep(_as_tokens(X))).numpy()

    def predict_scores(self, X: Any) -> np.ndarray:
        """Class probabilities (N, C): softmax for multiclass, per-class sigmoid for multilabel."""
        logits = torch.as_tensor(self.decision_function(X))
        probs = logits.softmax(1) if self.task_ == "multiclass" else logits.sigmoid()
        return probs.numpy()

    def predict(self, X: Any) -> np.ndarray:
        """Class indices (N,) for multiclass; multi-hot (N, C) at probability 0.5 for multilabel."""
        logits = self.decision_function(X)
        if self.task_ == "multiclass":
            return logits.argmax(1)
        return (logits > 0).astype(np.int64)

    def score(self, X: Any, y: Any) -> float:
        """Accuracy (multiclass) or macro mAP over classes with a positive (multilabel)."""
        self._check_fitted()
        Xt = _as_tokens(X)
        y_np = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
        _infer_task(y_np, self.task_, "y")
        yt = _as_labels(y_np, self.task_, Xt.shape[0], self.n_classes_, "y")
        return self._metric(yt, torch.as_tensor(self.decision_function(Xt)))


class LinearProbe(_BaseProbe):
    """Mean over tokens → standardise (train statistics) → linear layer (CE or BCE)."""

    _pooled = True

    def _build(self, d, c, Z, y):
        return _LinearHead(d, c)


class AttentiveProbe(_BaseProbe):
    """Learned queries cross-attend to layer-normed tokens (multi-head), layer norm, linear head."""

    def __init__(self, *, num_queries: int = 1, num_heads: int = 4, **kwargs: Any):
        super().__init__(**kwargs)
        self.num_queries = num_queries
        self.num_heads = num_heads

    def _build(self, d, c, Z, y):
        if self.num_queries < 1 or self.num_heads < 1:
            raise ValueError("num_queries and num_heads must be positive")
        if d % self.num_heads:
            raise ValueError(f"embedding dimension D={d} is not divisible by "
                             f"num_heads={self.num_heads}")
        return _AttentiveHead(d, c, self.num_queries, self.num_heads)


def _random_tokens(Z: torch.Tensor, rows: torch.Tensor, k: int) -> torch.Tensor:
    """k tokens drawn (with replacement, global RNG: seeded by the caller) from samples `rows`."""
    s = rows[torch.randint(len(rows), (k,))]
    t = torch.randint(Z.shape[1], (k,))
    return Z[s, t]  # (k, D)


class PrototypicalProbe(_BaseProbe):
    """K prototypes per class; logit_c = τ · max over tokens and c's prototypes of cos(t, p) + b_c.

    τ (initial value `temperature`) is learned; b_c starts at −τ·(mean initial score of class c).
    `init="data"` starts class c's prototypes at the difference between the mean token of its
    samples and that of the others (jittered when K > 1): even a signal carried by one token in T
    points that way, whereas a random token of a positive sample is mostly noise (that init was
    unstable in our synthetic test: mAP 0.5–0.99 across data seeds). K defaults to 1.
    """

    def __init__(self, *, n_prototypes_per_class: int = 1, temperature: float = 10.0,
                 init: str = "data", **kwargs: Any):
        super().__init__(**kwargs)
        self.n_prototypes_per_class = n_prototypes_per_class
        self.temperature = temperature
        self.init = init

    def _build(self, d, c, Z, y):
        k = self.n_prototypes_per_class
        if k < 1 or not self.temperature > 0:
            raise ValueError("n_prototypes_per_class and temperature must be positive")
        if self.init not in ("data", "random"):
            raise ValueError(f"init must be 'data' or 'random', got {self.init!r}")
        init = torch.randn(c * k, d)
        if self.init == "data":  # class-contrastive token means, K jittered copies per class
            tok_mean = Z.mean(dim=1)  # (N, D)
            for ci in range(c):
                pos = (y == ci) if y.ndim == 1 else y[:, ci] > 0
                if pos.all() or not pos.any():
                    continue
                centre = tok_mean[pos].mean(0) - tok_mean[~pos].mean(0)  # (D,)
                jitter = init[ci * k:(ci + 1) * k] * centre.norm() / math.sqrt(d)
                init[ci * k:(ci + 1) * k] = centre + 0.5 * jitter * (k > 1)
        head = _PrototypicalHead(d, c, k, init, self.temperature)
        with torch.no_grad():  # start each class's decision threshold at its mean initial score
            logits = torch.cat([head(Z[i:i + 256]) for i in range(0, len(Z), 256)])  # (N, C)
            head.bias.copy_(-logits.mean(0))  # bias was 0: logits = τ · score
        return head


class BinarizedPrototypicalProbe(_BaseProbe):
    """protobin (Rauch et al. 2025): P class-agnostic sign()-binarized prototypes (straight-through
    in training), score = max cosine over all tokens, then a linear head to the classes.
    `n_prototypes=None` uses max(32, 4·C). The P scores sit in a narrow band of cosines, so they
    are standardised by a batch norm (no affine; running statistics at inference) before the
    head."""

    def __init__(self, *, n_prototypes: int | None = None, init: str = "data", **kwargs: Any):
        super().__init__(**kwargs)
        self.n_prototypes = n_prototypes
        self.init = init

    def _build(self, d, c, Z, y):
        p = self.n_prototypes if self.n_prototypes is not None else max(32, 4 * c)
        if p < 1:
            raise ValueError(f"n_prototypes must be positive, got {p}")
        if self.init not in ("data", "random"):
            raise ValueError(f"init must be 'data' or 'random', got {self.init!r}")
        if self.init == "data":  # random training tokens (standardised), scaled into the STE range
            init = _random_tokens(Z, torch.arange(Z.shape[0]), p)
            init = init / init.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)
        else:
            init = torch.rand(p, d) * 2 - 1
        self.n_prototypes_ = p
        return _BinarizedPrototypicalHead(d, c, p, init)


_CLASSES = {"linear": LinearProbe, "attentive": AttentiveProbe,
            "prototypical": PrototypicalProbe, "protobin": BinarizedPrototypicalProbe}


def make_probe(name: str, **kwargs: Any) -> _BaseProbe:
    """A probe by name (one of `PROBES`) with its hyper-parameters as keyword arguments."""
    if name not in _CLASSES:
        raise ValueError(f"unknown probe {name!r}; expected one of {PROBES}")
    return _CLASSES[name](**kwargs)


__all__ = ["PROBES", "TASKS", "DEFAULT_GRID", "DEFAULT_PATIENCE", "LinearProbe", "AttentiveProbe",
           "PrototypicalProbe", "BinarizedPrototypicalProbe", "make_probe", "accuracy", "average_precision",
           "mean_average_precision"]
