#!/usr/bin/python3
"""Fits the rational erf of src/engine/vmath_avx512.h: erf(x) ~ x P(x^2) / Q(x^2) on
[0, 3.92] (odd, so the same on [-3.92, 0]; beyond, erf rounds to +-1 in float), P and Q of
degree 5, Q(0) = 1. Linearised least squares (x P - erf Q = 0 over a dense grid, weighted by
1 / Q of the previous step) with Lawson's reweighting toward the minimax error. Prints the
coefficients (lowest degree first) and the error in exact and in float32 evaluation.

Usage: /usr/bin/python3 tools/fit_erf.py
"""
from math import erf

import numpy as np

C = 3.92
DEG = 5


def fit(iters=40):
    x = np.linspace(1e-6, C, 20000)
    f = np.array([erf(v) for v in x])
    t = x * x
    w, q = np.ones_like(x), np.ones_like(x)
    for _ in range(iters):
        a = np.hstack([x[:, None] * t[:, None] ** np.arange(DEG + 1)[None, :],
                       -(f[:, None] * t[:, None] ** np.arange(1, DEG + 1)[None, :])])
        sol, *_ = np.linalg.lstsq(a * (w / q)[:, None], f * (w / q), rcond=None)
        p, qc = sol[:DEG + 1], np.concatenate([[1.0], sol[DEG + 1:]])
        q = np.polyval(qc[::-1], t)
        err = x * np.polyval(p[::-1], t) / q - f
        w = np.maximum(w * np.abs(err) ** 0.5 / (w * np.abs(err) ** 0.5).max(), 1e-12)
    return p, qc, np.abs(err).max()


def float32_error(p, qc):
    xs = np.linspace(-6, 6, 200001).astype(np.float32)
    xc = np.clip(xs, -C, C).astype(np.float32)
    t = xc * xc
    pv, qv = np.float32(p[-1]), np.float32(qc[-1])
    for k in range(DEG - 1, -1, -1):
        pv = (pv * t + np.float32(p[k])).astype(np.float32)
        qv = (qv * t + np.float32(qc[k])).astype(np.float32)
    got = (xc * pv / qv).astype(np.float32)
    return np.abs(got - np.array([erf(float(v)) for v in xs])).max()


def main():
    p, qc, err = fit()
    print("P", ", ".join("%.10g" % v for v in p))
    print("Q", ", ".join("%.10g" % v for v in qc))
    print("max error %.3g exact, %.3g in float32" % (err, float32_error(p, qc)))


if __name__ == "__main__":
    main()
