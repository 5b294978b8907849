"""Reference kernels in plain NumPy: the oracle every faster backend is tested against.

These functions define the semantics of the engine. They are written so that Numba can compile
them unchanged (``_numba.py`` wraps them with ``numba.njit``): explicit loops where the order of
operations matters, no Python objects, an explicit stack instead of recursion. The C++ core in
``cpp/`` implements the same algorithm step by step.

All inputs are validated and converted before they reach this module (see ``engine.py``):
C-contiguous float64 arrays, uint8 masks, plain ints and floats.

Conventions
-----------
* ``mode``: 0 = exact means (no uncertainty), 1 = independent variances, 2 = full covariance.
* ``sd``: standard deviations ``(k,)``, used in mode 1; ``chol``: lower Cholesky factor
  ``(k, k)``, used in mode 2. The unused one may be an empty dummy array.
* ``normals``: fixed standard-normal QMC samples ``(n_samples, k)``, shared by all candidate
  supermodels of one decision (common random numbers: ``Q`` is exactly monotone and submodular).
* ``digits``: round utilities to this many decimals before comparing them; -1 = no rounding.
* ``lower``, ``upper``: quality bounds (trailing arguments of every kernel; ``-inf`` / ``inf``,
  the defaults, mean no bound). Every quality sample (mode 0: every mean) is clipped to
  ``[lower, upper]`` as soon as it is computed, so ``Q(M) = E[max_{i in M} clip(Z_i)]``.
  Clipping is monotone (``max(clip(a), clip(b)) = clip(max(a, b))``): ``Q`` stays exactly
  monotone and submodular and pruning stays exact.
* Results of a search: ``(next_model, mask, utility, quality, cost, evaluated)`` where
  ``next_model`` is -1 for stop.
"""

from __future__ import annotations

import numpy as np

#: Absolute slack (relative to the scale of the values) that pruning leaves for floating-point
#: error, on top of the rounding granularity.
PRUNE_SLACK = 1e-9


def cholesky_psd(cov):
    """Lower Cholesky factor of a positive semi-definite matrix.

    A pivot that is not positive (a zero or numerically negative eigen-direction, or below
    1e-12 of that model's variance) gets a zero column, so semi-definite matrices (e.g. a
    model whose estimate is exact) are handled without jitter. The loop order is fixed so
    that every backend computes the same bits.
    """
    k = cov.shape[0]
    lower = np.zeros((k, k))
    for j in range(k):
        d = cov[j, j]
        for p in range(j):
            d -= lower[j, p] * lower[j, p]
        # Relative to the pivot's own variance: an exact duplicate of an earlier model leaves
        # only rounding noise here, which must not become a spurious independent direction.
        if d <= 1e-12 * cov[j, j] or d <= 1e-300:
            continue
        ljj = np.sqrt(d)
        lower[j, j] = ljj
        for i in range(j + 1, k):
            s = cov[i, j]
            for p in range(j):
                s -= lower[i, p] * lower[j, p]
            lower[i, j] = s / ljj
    return lower


def has_bounds(lower, upper):
    """Whether ``[lower, upper]`` clips anything (the infinite default bounds do not)."""
    return lower > -np.inf or upper < np.inf


def clip_values(values, lower, upper):
    """Clip in place: ``v = min(max(v, lower), upper)``.

    Spelled as comparisons, ``max(v, b) = b if v < b else v`` and ``min(v, b) = b if b < v
    else v`` (C++'s ``std::max`` / ``std::min``), so that every backend keeps the same value,
    signed zeros included.
    """
    values[values < lower] = lower
    values[upper < values] = upper


def transform_rows(quality, mode, sd, chol, normals_t, zt, lower=-np.inf, upper=np.inf):
    """Write the quality samples of model ``i`` into row ``zt[i]`` (``normals_t`` is ``U^T``).

    ``Z = q + U L^T`` (mode 2) or ``q + U * sd`` (mode 1), each sample then clipped to
    ``[lower, upper]``. Vectorised over samples; per element the operations run in the same
    order as the loops of the compiled core (q, then + u_0 * l_0, + u_1 * l_1, ..., then the
    clip), so the bits agree.
    """
    k = quality.shape[0]
    bounded = has_bounds(lower, upper)
    for i in range(k):
        row = zt[i]
        row[:] = quality[i]
        if mode == 1:
            row += normals_t[i] * sd[i]
        else:
            for j in range(i + 1):
                row += normals_t[j] * chol[i, j]
        if bounded:
            clip_values(row, lower, upper)


def transform_samples(quality, mode, sd, chol, normals, lower=-np.inf, upper=np.inf):
    """Quality samples ``Z = q + U L^T`` (mode 2), ``q + U * sd`` (mode 1); ``(n_samples, k)``,
    clipped to ``[lower, upper]``."""
    ns = normals.shape[0]
    k = quality.shape[0]
    zt = np.empty((k, ns))
    transform_rows(quality, mode, sd, chol, np.ascontiguousarray(normals.T), zt, lower, upper)
    return np.ascontiguousarray(zt.T)


def make_workspace(k, ns):
    """Scratch arrays of one search, reusable across the searches of a batch or replay."""
    width = max(ns, 1)
    return (
        np.empty((k, width)),  # zt: the samples, one row per model
        np.empty((k + 1, width)),  # rowmax: row maxima of the supermodel at each depth
        np.empty(k + 1),  # qual: Q at each depth
        np.empty(k + 1),  # cst: C at each depth
        np.empty(k + 1, dtype=np.int64),  # nxt: next model to try at each depth
        np.empty(k + 1, dtype=np.int64),  # path: model added at each depth
        np.zeros(k, dtype=np.uint8),  # best_mask
    )


def numpy_sum(a):
    """Sum of a 1-D array in NumPy's pairwise order, spelled out.

    ``a.sum()`` is what the reference uses; compiled backends use this function (the C++
    core implements the same order) so that every backend computes the same bits.
    """
    n = a.shape[0]
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[i]
        return res
    if n <= 128:
        r0, r1, r2, r3 = a[0], a[1], a[2], a[3]
        r4, r5, r6, r7 = a[4], a[5], a[6], a[7]
        end = n - n % 8
        i = 8
        while i < end:
            r0 += a[i]
            r1 += a[i + 1]
            r2 += a[i + 2]
            r3 += a[i + 3]
            r4 += a[i + 4]
            r5 += a[i + 5]
            r6 += a[i + 6]
            r7 += a[i + 7]
            i += 8
        res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        while i < n:
            res += a[i]
            i += 1
        return res
    n2 = n // 2
    n2 -= n2 % 8
    return numpy_sum(a[:n2]) + numpy_sum(a[n2:])


def _row_sum(a):
    return a.sum()


def max_into_and_sum(parent, col, out):
    """``out = max(parent, col)`` elementwise; returns ``sum(out)`` (NumPy's order)."""
    np.maximum(parent, col, out=out)
    return _row_sum(out)


def max_into_and_sum_fused(parent, col, out):
    """:func:`max_into_and_sum` in one pass, for compiled backends: the same values and the
    same additions in the same order (NumPy's eight running sums for 8 <= n <= 128)."""
    n = out.shape[0]
    if n < 8 or n > 128:
        for i in range(n):
            out[i] = col[i] if col[i] > parent[i] else parent[i]
        return numpy_sum(out)
    for i in range(8):
        out[i] = col[i] if col[i] > parent[i] else parent[i]
    r0, r1, r2, r3 = out[0], out[1], out[2], out[3]
    r4, r5, r6, r7 = out[4], out[5], out[6], out[7]
    end = n - n % 8
    i = 8
    while i < end:
        for j in range(8):
            out[i + j] = col[i + j] if col[i + j] > parent[i + j] else parent[i + j]
        r0 += out[i]
        r1 += out[i + 1]
        r2 += out[i + 2]
        r3 += out[i + 3]
        r4 += out[i + 4]
        r5 += out[i + 5]
        r6 += out[i + 6]
        r7 += out[i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        out[i] = col[i] if col[i] > parent[i] else parent[i]
        res += out[i]
        i += 1
    return res


def threshold_continues(estimate, threshold, j, depth):
    """Whether the threshold cascade runs model ``j`` after model ``j - 1``.

    The one rule of the threshold cascade (docs/algorithm.md §3): continue iff the post-hoc
    estimate of model ``j - 1`` is below its threshold and ``j < depth`` (NaN never continues).
    """
    return j < depth and estimate < threshold


def select_best(post_quality, ran):
    """Index of the run model with the highest post-hoc estimate; -1 if none has run.

    The one selection rule of every strategy but the threshold cascade: ties go to the
    earliest model in the model order (the lowest index).
    """
    sel = -1
    for i in range(post_quality.shape[0]):
        if ran[i] and (sel < 0 or post_quality[i] > post_quality[sel]):
            sel = i
    return sel


def _round_key(value, scale):
    if scale > 0.0:
        return np.rint(value * scale) / scale
    return value


def search_kernel(
    quality,
    cost,
    lam,
    mode,
    sd,
    chol,
    normals,
    ran,
    max_depth,
    force_order,
    prefixes_only,
    prune,
    prefer_expensive,
    digits,
    lower=-np.inf,
    upper=np.inf,
):
    """Best supermodel ``M ⊇ ran`` for one query; see docs/algorithm.md §3–§4.

    Enumerates supersets of ``ran`` once each, depth first, adding model indices in increasing
    order (so candidates are visited in lexicographic order of the tuples of added models).
    Ties in the rounded utility go to the cheaper (or, with ``prefer_expensive``, the dearer)
    supermodel, then to the one visited first. Quality samples (mode 0: means) are clipped to
    ``[lower, upper]``.
    """
    k = quality.shape[0]
    ns = normals.shape[0] if mode != 0 else 0
    ws = make_workspace(k, ns)
    res = search_with_workspace(
        quality,
        cost,
        lam,
        mode,
        sd,
        chol,
        np.ascontiguousarray(normals.T),
        ran,
        max_depth,
        force_order,
        prefixes_only,
        prune,
        prefer_expensive,
        digits,
        ws,
        lower,
        upper,
    )
    return res[0], ws[6].copy(), res[1], res[2], res[3], res[4]


def search_with_workspace(
    quality,
    cost,
    lam,
    mode,
    sd,
    chol,
    normals_t,
    ran,
    max_depth,
    force_order,
    prefixes_only,
    prune,
    prefer_expensive,
    digits,
    ws,
    lower=-np.inf,
    upper=np.inf,
):
    """:func:`search_kernel` with ``U^T`` given and scratch arrays from :func:`make_workspace`.

    Returns ``(next_model, utility, quality, cost, evaluated)``; the best supermodel's mask is
    left in ``ws[6]``.
    """
    k = quality.shape[0]
    sampled = mode != 0
    ns = normals_t.shape[1] if sampled else 0
    zt, rowmax, qual, cst, nxt, path, best_mask = ws
    if sampled:
        transform_rows(quality, mode, sd, chol, normals_t, zt, lower, upper)
    elif has_bounds(lower, upper):
        # Exact means: Q(M) = max of the clipped means (the caller's array stays untouched).
        quality = quality.copy()
        clip_values(quality, lower, upper)
    scale = 10.0**digits if digits >= 0 else 0.0

    n_ran = 0
    start = 0
    cost_root = 0.0
    total_cost = 0.0
    maxabs = 0.0
    for i in range(k):
        total_cost += cost[i]
        if ran[i] != 0:
            n_ran += 1
            cost_root += cost[i]
            start = i + 1
    if sampled:
        for i in range(k):
            a = max(zt[i].max(), -zt[i].min())
            if a > maxabs:
                maxabs = a
    else:
        for i in range(k):
            a = abs(quality[i])
            if a > maxabs:
                maxabs = a
    tol = PRUNE_SLACK * (1.0 + maxabs + lam * total_cost)
    if scale > 0.0:
        tol += 1.0 / scale

    # Per-depth state of the depth-first search (every entry is written before it is read).
    rowmax[0] = -np.inf

    q_root = -np.inf
    for i in range(k):
        if ran[i] != 0:
            if sampled:
                rowmax[0, :] = np.maximum(rowmax[0], zt[i])
            elif quality[i] > q_root:
                q_root = quality[i]
    if sampled and n_ran > 0:
        q_root = _row_sum(rowmax[0]) / ns
    qual[0] = q_root
    cst[0] = cost_root

    best_mask[:] = 0
    best_key = -np.inf
    best_util = -np.inf
    best_q = -np.inf
    best_c = 0.0
    found = False
    evaluated = 0

    if n_ran > 0:
        evaluated += 1
        util = q_root - lam * cost_root
        best_key = _round_key(util, scale)
        best_util = util
        best_q = q_root
        best_c = cost_root
        for i in range(k):
            best_mask[i] = ran[i]
        found = True

    max_add = max_depth - n_ran
    if prefixes_only:
        # The optimal cascade: only prefixes M_{0:j'} with j' >= |ran| (ran is a prefix).
        depth = 0
        m = n_ran
        while depth < max_add and m < k:
            if sampled:
                # Incremental row maxima: the child's follow from its parent's.
                qc = max_into_and_sum(rowmax[depth], zt[m], rowmax[depth + 1]) / ns
            else:
                qc = qual[depth]
                if quality[m] > qc:
                    qc = quality[m]
            cc = cst[depth] + cost[m]
            evaluated += 1
            qual[depth + 1] = qc
            cst[depth + 1] = cc
            util = qc - lam * cc
            key = _round_key(util, scale)
            better = (not found) or key > best_key
            if found and key == best_key:
                better = cc > best_c if prefer_expensive else cc < best_c
            if better:
                found = True
                best_key = key
                best_util = util
                best_q = qc
                best_c = cc
                for i in range(k):
                    best_mask[i] = 1 if i <= m else 0
            depth += 1
            m += 1
    else:
        depth = 0
        nxt[0] = start if force_order else 0
        while depth >= 0:
            if depth >= max_add:
                depth -= 1
                continue
            m = nxt[depth]
            while m < k and ran[m] != 0:
                m += 1
            if m >= k:
                depth -= 1
                continue
            nxt[depth] = m + 1
            if sampled:
                # Incremental row maxima: the child's follow from its parent's.
                qc = max_into_and_sum(rowmax[depth], zt[m], rowmax[depth + 1]) / ns
            else:
                qc = qual[depth]
                if quality[m] > qc:
                    qc = quality[m]
            cc = cst[depth] + cost[m]
            evaluated += 1
            # Lemma 1: a negative marginal gain rules out every superset containing m.
            if prune and (n_ran + depth) > 0 and (qc - qual[depth]) - lam * cost[m] < -tol:
                continue
            path[depth] = m
            util = qc - lam * cc
            key = _round_key(util, scale)
            better = (not found) or key > best_key
            if found and key == best_key:
                better = cc > best_c if prefer_expensive else cc < best_c
            if better:
                found = True
                best_key = key
                best_util = util
                best_q = qc
                best_c = cc
                for i in range(k):
                    best_mask[i] = ran[i]
                for d in range(depth + 1):
                    best_mask[path[d]] = 1
            qual[depth + 1] = qc
            cst[depth + 1] = cc
            nxt[depth + 1] = m + 1
            depth += 1

    next_model = -1
    for i in range(k):
        if best_mask[i] != 0 and ran[i] == 0:
            if next_model < 0:
                next_model = i
            elif not force_order and not prefixes_only and cost[i] < cost[next_model]:
                next_model = i
    return next_model, best_util, best_q, best_c, evaluated


def search_batch_kernel(
    quality,
    cost,
    lam,
    mode,
    sd,
    chol,
    normals,
    ran,
    max_depth,
    force_order,
    prefixes_only,
    prune,
    prefer_expensive,
    digits,
    lower=-np.inf,
    upper=np.inf,
):
    """``search_kernel`` over ``n`` queries (the same quality bounds for all).

    ``quality``, ``cost``, ``ran``: ``(n, k)``; ``lam``, ``prefer_expensive``: ``(n,)``;
    ``sd``: ``(n, k)`` standard deviations (mode 1); ``chol``: ``(n, k, k)`` Cholesky factors
    (mode 2); the unused one may be an empty dummy with the leading dimension ``n``. Returns
    ``next_model (n,)``, ``mask (n, k)``, ``utility``, ``quality``, ``cost`` ``(n,)`` and
    ``evaluated (n,)``.
    """
    n, k = quality.shape
    nxt = np.empty(n, dtype=np.int64)
    masks = np.zeros((n, k), dtype=np.uint8)
    util = np.empty(n)
    qual = np.empty(n)
    cst = np.empty(n)
    evaluated = np.empty(n, dtype=np.int64)
    ns = normals.shape[0] if mode != 0 else 0
    ws = make_workspace(k, ns)
    normals_t = np.ascontiguousarray(normals.T)
    for r in range(n):
        res = search_with_workspace(
            quality[r],
            cost[r],
            lam[r],
            mode,
            sd[r],
            chol[r],
            normals_t,
            ran[r],
            max_depth,
            force_order,
            prefixes_only,
            prune,
            prefer_expensive[r] != 0,
            digits,
            ws,
            lower,
            upper,
        )
        nxt[r] = res[0]
        masks[r] = ws[6]
        util[r] = res[1]
        qual[r] = res[2]
        cst[r] = res[3]
        evaluated[r] = res[4]
    return nxt, masks, util, qual, cst, evaluated


def replay_two_phase_kernel(
    ante_quality,
    post_quality,
    ante_sd,
    post_sd,
    ante_cost,
    post_cost,
    true_quality,
    true_cost,
    lambdas,
    prefer_expensive,
    normals,
    use_sd,
    strategy,
    thresholds,
    max_depth,
    force_order,
    prefixes_only,
    prune,
    digits,
    select_last,
    lower=-np.inf,
    upper=np.inf,
):
    """Replay a strategy over ``n`` queries with a two-phase (ex-ante / post-hoc) estimator.

    A model's estimates switch from ex-ante to post-hoc once it has run. All arrays are ``(n, k)``
    except ``lambdas`` (one multiplier per step ``j = |R|``; the last is reused for later steps),
    ``prefer_expensive (n,)`` (the tie-breaking coin per query) and ``thresholds (k,)``
    (threshold cascade: after running model ``j`` continue iff its post-hoc quality estimate is
    below ``thresholds[j]``). ``strategy``: 0 = supermodel search, 1 = threshold cascade.
    ``use_sd``: 1 = independent uncertainty with standard deviations ``ante_sd`` / ``post_sd``,
    0 = exact means. The answer is the last model run when ``select_last``, else the run model
    with the highest post-hoc estimate (ties: lowest index). ``lower``, ``upper``: quality
    bounds of the supermodel search (the answer is still chosen by the unclipped estimates).

    Returns ``selected (n,)``, ``n_run (n,)``, ``order (n, k)`` (models in the order run, -1
    padded), ``cost (n,)`` (true cost of all models run) and ``quality (n,)`` (true quality of
    the selected answer).
    """
    n, k = ante_quality.shape
    n_lam = lambdas.shape[0]
    selected = np.full(n, -1, dtype=np.int64)
    n_run = np.zeros(n, dtype=np.int64)
    order = np.full((n, k), -1, dtype=np.int64)
    total_cost = np.zeros(n)
    total_quality = np.zeros(n)
    ran = np.zeros(k, dtype=np.uint8)
    no_chol = np.zeros((0, 0))
    ns = normals.shape[0] if use_sd else 0
    ws = make_workspace(k, ns)
    normals_t = np.ascontiguousarray(normals.T)
    q_cur = np.empty(k)
    c_cur = np.empty(k)
    sd_cur = np.empty(k)
    for r in range(n):
        for i in range(k):
            ran[i] = 0
        j = 0
        while j < k:
            if strategy == 1:
                if j == 0:
                    nm = 0
                elif threshold_continues(post_quality[r, j - 1], thresholds[j - 1], j, max_depth):
                    nm = j
                else:
                    nm = -1
            else:
                for i in range(k):
                    if ran[i] != 0:
                        q_cur[i] = post_quality[r, i]
                        c_cur[i] = post_cost[r, i]
                        sd_cur[i] = post_sd[r, i] if use_sd else 0.0
                    else:
                        q_cur[i] = ante_quality[r, i]
                        c_cur[i] = ante_cost[r, i]
                        sd_cur[i] = ante_sd[r, i] if use_sd else 0.0
                lam = lambdas[j] if j < n_lam else lambdas[n_lam - 1]
                res = search_with_workspace(
                    q_cur,
                    c_cur,
                    lam,
                    1 if use_sd else 0,
                    sd_cur,
                    no_chol,
                    normals_t,
                    ran,
                    max_depth,
                    force_order,
                    prefixes_only,
                    prune,
                    prefer_expensive[r] != 0,
                    digits,
                    ws,
                    lower,
                    upper,
                )
                nm = res[0]
            if nm < 0:
                break
            ran[nm] = 1
            order[r, j] = nm
            total_cost[r] += true_cost[r, nm]
            j += 1
        n_run[r] = j
        if j > 0:
            if select_last:
                sel = order[r, j - 1]
            else:
                sel = select_best(post_quality[r], ran)
            selected[r] = sel
            total_quality[r] = true_quality[r, sel]
    return selected, n_run, order, total_cost, total_quality
