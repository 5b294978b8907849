// Replay of a strategy with two-phase estimates (see replay.hpp and
// `replay_two_phase_kernel` in _reference.py).
#include "cascade_routing/replay.hpp"

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "parallel.hpp"

namespace cascade_routing {

BatchStatus replay_two_phase(const ReplayInput& in, std::size_t n, int k, const Normals& normals,
                             const SearchOptions& opt, const ReplayOutput& out, int n_threads) {
    if (k < 1 || k > kMaxModels) return {Status::bad_size, 0};
    const bool search_strategy = in.strategy == Strategy::supermodel_search;
    const bool sampled = search_strategy && in.use_sd;
    if (sampled && normals.n_samples == 0) return {Status::bad_size, 0};
    if (search_strategy && in.n_lambdas == 0) return {Status::bad_size, 0};
    if (n == 0) return {};
    const int threads = resolve_threads(n_threads, n);
    const std::size_t kk = static_cast<std::size_t>(k);
    detail::RowBlocks blocks(n, detail::block_size(n, threads));
    detail::FirstFailure failure;
    std::atomic<bool> cancelled{false};

    auto worker = [&](detail::RowBlocks& rows) {
        SearchWorkspace ws;  // one per thread, sized once
        ws.reserve(k, sampled ? normals.n_samples : 0);
        if (sampled) ws.set_normals(normals, k);
        double q_cur[kMaxModels];
        double c_cur[kMaxModels];
        std::uint8_t ran[kMaxModels];
        SearchInput q;
        q.quality = q_cur;
        q.cost = c_cur;
        q.mode = sampled ? Mode::independent : Mode::exact;
        q.ran = ran;
        SearchResult res;
        std::size_t begin = 0, end = 0;
        while (rows.next(begin, end)) {
            for (std::size_t r = begin; r < end; ++r) {
                if (opt.cancel != nullptr && opt.cancel->stop()) {
                    cancelled.store(true, std::memory_order_relaxed);
                    return;
                }
                const double* aq = in.ante_quality + r * kk;
                const double* pq = in.post_quality + r * kk;
                const double* ac = in.ante_cost + r * kk;
                const double* pc = in.post_cost + r * kk;
                std::int64_t* order = out.order + r * kk;
                std::fill(order, order + kk, std::int64_t{-1});
                std::fill(ran, ran + kk, std::uint8_t{0});
                double total_cost = 0.0;
                bool failed = false;
                if (search_strategy) {
                    // Estimates of models not run yet are the ex-ante ones. Only the column of
                    // the model just run changes from one step to the next, so the quality
                    // samples are updated one column at a time.
                    std::copy(aq, aq + kk, q_cur);
                    std::copy(ac, ac + kk, c_cur);
                    q.prefer_expensive = in.prefer_expensive[r] != 0;
                    if (sampled) {
                        const double* asd = in.ante_sd + r * kk;
                        for (int i = 0; i < k; ++i) ws.fill_column(i, aq[i], asd[i], opt);
                    }
                }
                int j = 0;
                while (j < k) {
                    int nm;
                    if (!search_strategy) {
                        if (j == 0)
                            nm = 0;
                        else if (j < opt.max_depth && pq[j - 1] < in.thresholds[j - 1])
                            nm = j;
                        else
                            nm = -1;
                    } else {
                        const std::size_t li = static_cast<std::size_t>(j);
                        q.lam = li < in.n_lambdas ? in.lambdas[li] : in.lambdas[in.n_lambdas - 1];
                        const Status st = search_prepared(q, k, opt, ws, res);
                        if (st == Status::cancelled) {
                            cancelled.store(true, std::memory_order_relaxed);
                            return;
                        }
                        if (st != Status::ok) {
                            failure.report(r, st);
                            failed = true;
                            break;
                        }
                        nm = res.next_model;
                    }
                    if (nm < 0) break;
                    ran[nm] = 1;
                    order[j] = nm;
                    total_cost += in.true_cost[r * kk + static_cast<std::size_t>(nm)];
                    if (search_strategy) {
                        q_cur[nm] = pq[nm];
                        c_cur[nm] = pc[nm];
                        // Only this column changes; it is clipped like all the others.
                        if (sampled)
                            ws.fill_column(nm, pq[nm],
                                           in.post_sd[r * kk + static_cast<std::size_t>(nm)], opt);
                    }
                    ++j;
                }
                out.n_run[r] = j;
                out.cost[r] = total_cost;
                out.selected[r] = -1;
                out.quality[r] = 0.0;
                if (failed || j == 0) continue;
                std::int64_t sel;
                if (in.select_last) {
                    sel = order[j - 1];
                } else {
                    sel = -1;
                    for (int i = 0; i < k; ++i)
                        if (ran[i] != 0 && (sel < 0 || pq[i] > pq[sel])) sel = i;
                }
                out.selected[r] = sel;
                out.quality[r] = in.true_quality[r * kk + static_cast<std::size_t>(sel)];
            }
        }
    };
    detail::run_workers(threads, blocks, worker, opt.cancel);
    if (cancelled.load()) return {Status::cancelled, 0};
    return failure.result();
}

}  // namespace cascade_routing
