"""Synthetic patient tables: a copula baseline, the tabular VAE, and what to measure before release.

Taught in chapter 6.5, "Health and medicine", on the breast-cancer Wisconsin diagnostic data
(Wolberg, Street and Mangasarian; UCI Machine Learning Repository, CC BY 4.0) shipped inside
scikit-learn. The workflow and its parts:

1. data: :func:`load_breast_cancer_table`, :func:`split_rows` (a stratified train / holdout split);
2. generators: :class:`NormalScores` (each column through its empirical CDF, then Phi^-1),
   :class:`GaussianCopula` (one Gaussian copula per class of the label), the tabular VAE of
   ``models/tabular_vae.py`` (:func:`fit_tabular_vae`, :func:`sample_tabular_vae`) and
   :func:`copier`, a "generator" that leaks on purpose;
3. utility: :func:`tstr_auc`, train on synthetic rows, test on real ones (logistic regression);
4. fidelity: :func:`ks_per_column` (Kolmogorov-Smirnov statistic), :func:`correlation_gap`;
5. privacy: :func:`dcr` (distance to the closest record), :func:`membership_auc` (a
   distance-based membership-inference attack; ROC AUC 0.5 = no leak);
6. review: :func:`numbers_in` and :func:`unsupported_numbers` flag numbers in a generated text
   that its source record does not contain; :func:`patient_guide_messages` builds the prompt.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import ndtr, ndtri

from aigc_course.models.tabular_vae import TabularVAE, TabularVAEConfig
from aigc_course.train import History, TrainConfig, fit, random_batches


def load_breast_cancer_table() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """X (569, 30) float64, y (569,) int64 with 0 = malignant and 1 = benign, and the column names."""
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    return d.data.astype(np.float64), d.target.astype(np.int64), [str(n) for n in d.feature_names]


def split_rows(y: np.ndarray, holdout: float = 0.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, holdout), stratified by the label ``y`` so both keep its class shares."""
    from sklearn.model_selection import train_test_split

    if not 0 < holdout < 1:
        raise ValueError(f"holdout must be a fraction in (0, 1), got {holdout}.")
    idx = np.arange(len(y))
    train, test = train_test_split(idx, test_size=holdout, random_state=seed, stratify=y)
    return np.sort(train), np.sort(test)


def _check_table(X: np.ndarray, name: str = "X") -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or len(X) < 2:
        raise ValueError(f"{name} must be a table (rows, columns) with at least 2 rows, got shape {X.shape}.")
    if not np.isfinite(X).all():
        raise ValueError(f"{name} holds NaN or infinite values: impute or drop them first.")
    return X


class NormalScores:
    """Map each column to N(0, 1) through its empirical CDF, and back through its quantiles.

    to_normal: u = mid-rank of x among the n fitted values / n (in (0, 1)), z = Phi^-1(u).
    from_normal: u = Phi(z), x = the empirical quantile at u, linear between order statistics;
    so generated values stay inside the range of the fitted column.
    """

    def fit(self, X: np.ndarray) -> NormalScores:
        self.sorted_ = np.sort(_check_table(X), axis=0)  # (n, D), each column sorted
        n = len(self.sorted_)
        self.levels_ = (np.arange(n) + 0.5) / n  # the probability level of each order statistic
        return self

    def to_normal(self, X: np.ndarray) -> np.ndarray:
        X = _check_table(X)
        n = len(self.sorted_)
        U = np.empty_like(X)
        for j in range(X.shape[1]):
            lo = np.searchsorted(self.sorted_[:, j], X[:, j], side="left")
            hi = np.searchsorted(self.sorted_[:, j], X[:, j], side="right")
            U[:, j] = (lo + hi) / (2 * n)  # mid-rank: ties share one level
        return ndtri(np.clip(U, 0.5 / n, 1 - 0.5 / n))

    def from_normal(self, Z: np.ndarray) -> np.ndarray:
        U = ndtr(np.asarray(Z, dtype=np.float64))
        return np.stack([np.interp(U[:, j], self.levels_, self.sorted_[:, j]) for j in range(U.shape[1])], 1)


class GaussianCopula:
    """A Gaussian copula per class of the label (Sklar's theorem; Patki et al., 2016, the SDV).

    The label is categorical, so it is not one more column: p(y) is the class shares, and for
    each class c the features get their own marginals (:class:`NormalScores`) and the
    correlation matrix R_c of their normal scores. Sampling: y ~ p(y), z ~ N(0, R_y), x = F^-1(Phi(z)).
    """

    def fit(self, X: np.ndarray, y: np.ndarray) -> GaussianCopula:
        X, y = _check_table(X), np.asarray(y)
        self.classes_ = np.unique(y)
        self.prior_ = np.array([(y == c).mean() for c in self.classes_])
        self.scores_, self.chol_ = [], []
        for c in self.classes_:
            if (y == c).sum() < 3:
                raise ValueError(f"class {c} has fewer than 3 rows: a copula cannot be fitted to it.")
            scores = NormalScores().fit(X[y == c])
            R = np.corrcoef(scores.to_normal(X[y == c]).T)  # (D, D)
            R = R + 1e-6 * np.eye(len(R))  # a small ridge keeps the Cholesky factor defined
            self.scores_.append(scores)
            self.chol_.append(np.linalg.cholesky(R))
        return self

    def sample(self, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """n synthetic rows X (n, D) and labels y (n,)."""
        rng = np.random.default_rng(seed)
        y = self.classes_[rng.choice(len(self.classes_), size=n, p=self.prior_)]
        X = np.empty((n, self.chol_[0].shape[0]))
        for k, c in enumerate(self.classes_):
            rows = y == c
            Z = rng.standard_normal((rows.sum(), X.shape[1])) @ self.chol_[k].T  # z ~ N(0, R_c)
            X[rows] = self.scores_[k].from_normal(Z)
        return X, y


def copier(X: np.ndarray, y: np.ndarray, n: int, noise: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A leaking "generator": n training rows drawn with replacement, plus Gaussian noise of
    ``noise`` times each column's standard deviation."""
    X = _check_table(X)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(X), size=n)
    return X[idx] + noise * X.std(0) * rng.standard_normal((n, X.shape[1])), np.asarray(y)[idx]


@dataclass
class TabularVAEFit:
    """A trained tabular VAE with the normal-score transform of its continuous columns."""

    model: TabularVAE
    scores: NormalScores
    history: History


def fit_tabular_vae(X: np.ndarray, y: np.ndarray, steps: int = 2000, batch_size: int = 64, lr: float = 2e-3,
                    seed: int = 0, eval_fn: Callable | None = None, eval_every: int | None = None,
                    **config) -> TabularVAEFit:
    """Train :class:`TabularVAE` on normal scores of X (continuous) and the label y (categorical).

    ``eval_fn(vae_fit) -> dict of floats`` runs every ``eval_every`` steps and at the end (its
    results land in ``history.evals``); ``config`` goes to :class:`TabularVAEConfig`."""
    X, y = _check_table(X), np.asarray(y, dtype=np.int64)
    scores = NormalScores().fit(X)
    x_cont = torch.tensor(scores.to_normal(X), dtype=torch.float32)
    x_cat = torch.tensor(y)[:, None]  # (N, 1): the label is one categorical column
    torch.manual_seed(seed)
    model = TabularVAE(TabularVAEConfig(n_continuous=X.shape[1], categories=(int(y.max()) + 1,), **config))
    batches = random_batches(x_cont, x_cat, batch_size=batch_size, generator=torch.Generator().manual_seed(seed))
    history = History()
    evaluate = None if eval_fn is None else (lambda m: eval_fn(TabularVAEFit(m, scores, history)))
    fit(model, lambda m, b: m(*b), batches, TrainConfig(steps=steps, lr=lr, progress=False, eval_every=eval_every,
                                                        desc="tabular VAE"), eval_fn=evaluate, history=history)
    return TabularVAEFit(model, scores, history)


def sample_tabular_vae(vae: TabularVAEFit, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n synthetic rows (X in the original units, y) from a :func:`fit_tabular_vae` result."""
    z_cont, x_cat = vae.model.sample(n, generator=torch.Generator().manual_seed(seed))
    return vae.scores.from_normal(z_cont.double().cpu().numpy()), x_cat[:, 0].cpu().numpy()


def tstr_auc(X_fit: np.ndarray, y_fit: np.ndarray, X_test: np.ndarray, y_test: np.ndarray) -> float:
    """ROC AUC on (X_test, y_test) of a logistic regression trained on (X_fit, y_fit).

    Train on synthetic, test on real (TSTR; Esteban et al., 2017) when X_fit is synthetic; the
    real-data reference (TRTR) when it is the real training split."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(y_fit)) < 2:
        raise ValueError("y_fit holds a single class: the generator produced no row of the other class.")
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    clf.fit(_check_table(X_fit, "X_fit"), y_fit)
    return float(roc_auc_score(y_test, clf.predict_proba(_check_table(X_test, "X_test"))[:, 1]))


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: max_x |F_a(x) - F_b(x)| of the empirical CDFs."""
    a, b = np.sort(np.asarray(a, dtype=np.float64)), np.sort(np.asarray(b, dtype=np.float64))
    grid = np.concatenate([a, b])  # the ECDFs only jump at the data points
    F_a = np.searchsorted(a, grid, side="right") / len(a)
    F_b = np.searchsorted(b, grid, side="right") / len(b)
    return float(np.abs(F_a - F_b).max())


def ks_per_column(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """The KS statistic of each column of two tables with the same columns (D,)."""
    A, B = _check_table(A, "A"), _check_table(B, "B")
    if A.shape[1] != B.shape[1]:
        raise ValueError(f"The tables have {A.shape[1]} and {B.shape[1]} columns: they must match.")
    return np.array([ks_statistic(A[:, j], B[:, j]) for j in range(A.shape[1])])


def correlation_gap(A: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, float]:
    """|corr(A) - corr(B)| (D, D) of the Pearson correlation matrices, and its mean off the diagonal."""
    A, B = _check_table(A, "A"), _check_table(B, "B")
    gap = np.abs(np.corrcoef(A.T) - np.corrcoef(B.T))
    off = ~np.eye(len(gap), dtype=bool)
    return gap, float(gap[off].mean())


def dcr(query: np.ndarray, reference: np.ndarray, scale: np.ndarray | None = None) -> np.ndarray:
    """Distance to the closest record: for each query row, the Euclidean distance to its nearest
    reference row, after dividing every column by ``scale`` (default: the reference's std)."""
    query, reference = _check_table(query, "query"), _check_table(reference, "reference")
    scale = reference.std(0) if scale is None else np.asarray(scale, dtype=np.float64)
    if np.any(scale <= 0):
        raise ValueError("scale has a zero entry (a constant column): drop that column or pass a scale.")
    q = torch.from_numpy(query / scale)
    r = torch.from_numpy(reference / scale)
    # the exact mode: the faster |q|^2 + |r|^2 - 2 q.r loses the zeros of copied rows to rounding
    dist = torch.cdist(q, r, compute_mode="donot_use_mm_for_euclid_dist")  # (Nq, Nr)
    return dist.min(dim=1).values.numpy()  # (Nq,)


def membership_auc(synthetic: np.ndarray, members: np.ndarray, non_members: np.ndarray,
                   scale: np.ndarray | None = None) -> float:
    """ROC AUC of a distance-based membership-inference attack on a synthetic table.

    The attacker scores each candidate record by minus its distance to the closest synthetic
    record (a member of the training set should have a close synthetic copy) and must tell the
    training rows (``members``) from real rows the generator never saw (``non_members``).
    0.5: the attacker guesses; 1: every member is closer than every non-member."""
    from sklearn.metrics import roc_auc_score

    scale = members.std(0) if scale is None else scale
    d_in, d_out = dcr(members, synthetic, scale), dcr(non_members, synthetic, scale)
    labels = np.r_[np.ones(len(d_in)), np.zeros(len(d_out))]
    return float(roc_auc_score(labels, -np.r_[d_in, d_out]))


NUMBER = re.compile(r"(?<![\w.])\d+(?:,\d{3})*(?:\.\d+)?")


def numbers_in(text: str) -> list[str]:
    """The numbers written in ``text`` as strings ("1,234.5", "14.2", "3"), in order."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}.")
    return [m.group().rstrip(".") for m in NUMBER.finditer(text)]


def unsupported_numbers(text: str, record: dict, allowed: tuple[float, ...] = ()) -> list[str]:
    """Numbers in ``text`` that match no value of ``record`` (nor ``allowed``) at the precision written.

    A number written with d decimals matches a value v when |number - v| <= 1/2 * 10^-d: "14"
    matches 14.13 and "14.1" matches 14.13, "14.3" does not. Numbers inside words ("COVID19")
    are skipped; a number the record lacks is returned for a human to review."""
    values = [float(v) for v in record.values() if isinstance(v, (int, float, np.integer, np.floating))]
    values += [float(v) for v in allowed]
    flagged = []
    for s in numbers_in(text):
        x = float(s.replace(",", ""))
        decimals = len(s.split(".")[1]) if "." in s else 0
        if not any(abs(x - v) <= 0.5 * 10.0 ** -decimals + 1e-9 for v in values):
            flagged.append(s)
    return flagged


def patient_guide_messages(record: dict) -> list[dict]:
    """Chat messages asking for a plain-language guide to one (synthetic) record."""
    if not record:
        raise ValueError("record is empty: pass a dict of field -> value.")
    lines = "\n".join(f"- {k}: {v:.4g}" if isinstance(v, float) else f"- {k}: {v}" for k, v in record.items())
    system = ("You explain medical test results in plain language for patients. Use only the numbers "
              "given in the record; do not add numbers, diagnoses or treatment advice. "
              "Advise the reader to discuss the results with their doctor.")
    user = f"Write a short guide, in simple words, to this record of cell measurements from a breast biopsy image:\n{lines}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def checked_guides(model, tokenizer, record: dict, n: int = 4, max_new_tokens: int = 200,
                   temperature: float = 0.7, seed: int = 0) -> list[dict]:
    """n candidate guides from an instruct LM (:func:`aigc_course.apps.hub.chat`), each with the
    numbers it writes that the record does not hold: ``{"text", "unsupported", "passes"}``."""
    from aigc_course.apps import hub

    texts = hub.chat(model, tokenizer, patient_guide_messages(record), max_new_tokens=max_new_tokens,
                     temperature=temperature, num_return_sequences=n, seed=seed)
    out = []
    for text in texts:
        flagged = unsupported_numbers(text, record)
        out.append({"text": text, "unsupported": flagged, "passes": not flagged})
    return out
