// Bindings of the supermodel search: cholesky_psd, search, search_batch.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "arrays.hpp"
#include "cascade_routing/search.hpp"
#include "interrupt.hpp"

namespace cascade_routing::bindings {
namespace {

constexpr double kReleaseGilWork = 65536.0;

py::array cholesky_psd_py(py::handle cov_obj) {
    py::array cov = input<double>(cov_obj, "cov");
    if (cov.ndim() != 2 || cov.shape(0) != cov.shape(1))
        throw py::value_error("cov must be a square (k, k) matrix, got shape " + shape_string(cov));
    const py::ssize_t k = cov.shape(0);
    const double* c = ptr<double>(cov);
    for (py::ssize_t i = 0; i < k * k; ++i)
        if (!std::isfinite(c[i]))
            throw py::value_error("cov holds NaN or infinite values; pass finite numbers");
    py::array_t<double> lower({k, k});
    cholesky_psd(c, static_cast<std::size_t>(k), lower.mutable_data());
    return std::move(lower);
}

py::tuple search_py(py::handle quality_obj, py::handle cost_obj, double lam, int mode_int,
                    py::handle sd_obj, py::handle chol_obj, py::handle normals_obj,
                    py::handle ran_obj, std::int64_t max_depth, bool force_order,
                    bool prefixes_only, bool prune, bool prefer_expensive, int digits, double lower,
                    double upper) {
    py::array quality = input<double>(quality_obj, "quality");
    if (quality.ndim() != 1)
        throw py::value_error("quality must be 1-D (k,), got shape " + shape_string(quality));
    const int k = check_models(quality.shape(0), "quality");
    py::array cost = input<double>(cost_obj, "cost");
    require_shape(cost, "cost", {k}, "(k,)");
    py::array ran = mask_input(ran_obj, "ran");
    require_shape(ran, "ran", {k}, "(k,)");
    const Mode mode = check_mode(mode_int);
    SearchOptions opt =
        make_options(max_depth, force_order, prefixes_only, prune, digits, lower, upper);

    SearchInput in;
    in.quality = ptr<double>(quality);
    in.cost = ptr<double>(cost);
    in.lam = lam;
    in.mode = mode;
    in.ran = ptr<std::uint8_t>(ran);
    in.prefer_expensive = prefer_expensive;
    Normals normals;
    py::array sd, chol;
    if (mode == Mode::independent) {
        sd = input<double>(sd_obj, "sd");
        require_shape(sd, "sd", {k}, "(k,)");
        in.sd = ptr<double>(sd);
    } else if (mode == Mode::covariance) {
        chol = input<double>(chol_obj, "chol");
        require_shape(chol, "chol", {k, k}, "(k, k)");
        in.chol = ptr<double>(chol);
    }
    if (mode != Mode::exact) normals = check_normals(normals_obj, k);

    py::array_t<std::uint8_t> mask(k);
    SearchResult res;
    Status status;
    auto run = [&] {
        SearchWorkspace ws;
        ws.reserve(k, normals.n_samples);
        if (mode != Mode::exact) ws.set_normals(normals, k, /*transpose=*/false);
        status = search(in, k, opt, ws, res);
    };
    int n_ran = 0;
    for (int i = 0; i < k; ++i) n_ran += in.ran[i] != 0;
    // An upper bound on the work (no prefix rule) decides whether releasing the GIL is worth
    // its cost (and its risk of waiting a switch interval to get it back).
    if (search_work(k, n_ran, max_depth, false, normals.n_samples) >= kReleaseGilWork) {
        // Long enough to release the GIL, possibly long enough to need Ctrl-C.
        SignalWatch watch;
        opt.cancel = watch.cancellation();
        {
            py::gil_scoped_release release;
            run();
        }
        watch.rethrow();
    } else {
        run();
    }
    raise_status(status, "the search input");
    write_mask(res, in.ran, k, mask.mutable_data());
    return py::make_tuple(res.next_model, std::move(mask), res.utility, res.quality, res.cost,
                          res.evaluated);
}

py::tuple search_batch_py(py::handle quality_obj, py::handle cost_obj, py::handle lam_obj,
                          int mode_int, py::handle sd_obj, py::handle chol_obj,
                          py::handle normals_obj, py::handle ran_obj, std::int64_t max_depth,
                          bool force_order, bool prefixes_only, bool prune, py::handle prefer_obj,
                          int digits, double lower, double upper, py::handle n_threads_obj) {
    py::array quality = input<double>(quality_obj, "quality");
    if (quality.ndim() != 2)
        throw py::value_error("quality must be 2-D (n, k), got shape " + shape_string(quality));
    const py::ssize_t n = quality.shape(0);
    const int k = check_models(quality.shape(1), "quality");
    py::array cost = input<double>(cost_obj, "cost");
    require_shape(cost, "cost", {n, k}, "(n, k)");
    py::array lam = input<double>(lam_obj, "lam");
    require_shape(lam, "lam", {n}, "(n,)");
    py::array ran = mask_input(ran_obj, "ran");
    require_shape(ran, "ran", {n, k}, "(n, k)");
    py::array prefer = mask_input(prefer_obj, "prefer_expensive");
    require_shape(prefer, "prefer_expensive", {n}, "(n,)");
    const Mode mode = check_mode(mode_int);
    SearchOptions opt =
        make_options(max_depth, force_order, prefixes_only, prune, digits, lower, upper);
    const int n_threads = check_threads(n_threads_obj);

    BatchInput in;
    in.quality = ptr<double>(quality);
    in.cost = ptr<double>(cost);
    in.lam = ptr<double>(lam);
    in.mode = mode;
    in.ran = ptr<std::uint8_t>(ran);
    in.prefer_expensive = ptr<std::uint8_t>(prefer);
    Normals normals;
    py::array sd, chol;
    if (mode == Mode::independent) {
        sd = input<double>(sd_obj, "sd");
        require_shape(sd, "sd", {n, k}, "(n, k)");
        in.sd = ptr<double>(sd);
    } else if (mode == Mode::covariance) {
        chol = input<double>(chol_obj, "chol");
        require_shape(chol, "chol", {n, k, k}, "(n, k, k)");
        in.chol = ptr<double>(chol);
    }
    if (mode != Mode::exact) normals = check_normals(normals_obj, k);

    py::array_t<std::int64_t> next_model(n);
    py::array_t<std::uint8_t> mask({n, static_cast<py::ssize_t>(k)});
    py::array_t<double> utility(n), quality_out(n), cost_out(n);
    py::array_t<std::int64_t> evaluated(n);
    BatchOutput out;
    out.next_model = next_model.mutable_data();
    out.mask = mask.mutable_data();
    out.utility = utility.mutable_data();
    out.quality = quality_out.mutable_data();
    out.cost = cost_out.mutable_data();
    out.evaluated = evaluated.mutable_data();

    BatchStatus status;
    SignalWatch watch;
    opt.cancel = watch.cancellation();
    {
        py::gil_scoped_release release;
        status = search_batch(in, static_cast<std::size_t>(n), k, normals, opt, out, n_threads);
    }
    watch.rethrow();
    raise_status(status, "the search input");
    return py::make_tuple(std::move(next_model), std::move(mask), std::move(utility),
                          std::move(quality_out), std::move(cost_out), std::move(evaluated));
}

constexpr double kInf = std::numeric_limits<double>::infinity();

}  // namespace

void bind_search(py::module_& m) {
    m.def("cholesky_psd", &cholesky_psd_py, py::arg("cov"),
          "Lower Cholesky factor of a PSD matrix (k, k); non-positive pivots give zero columns.");
    m.def("search", &search_py, py::arg("quality"), py::arg("cost"), py::arg("lam"),
          py::arg("mode"), py::arg("sd"), py::arg("chol"), py::arg("normals"), py::arg("ran"),
          py::arg("max_depth"), py::arg("force_order"), py::arg("prefixes_only"), py::arg("prune"),
          py::arg("prefer_expensive"), py::arg("digits"), py::arg("lower") = -kInf,
          py::arg("upper") = kInf,
          "Best supermodel of one query: (next_model, mask, utility, quality, cost, evaluated).");
    m.def("search_batch", &search_batch_py, py::arg("quality"), py::arg("cost"), py::arg("lam"),
          py::arg("mode"), py::arg("sd"), py::arg("chol"), py::arg("normals"), py::arg("ran"),
          py::arg("max_depth"), py::arg("force_order"), py::arg("prefixes_only"), py::arg("prune"),
          py::arg("prefer_expensive"), py::arg("digits"), py::arg("lower") = -kInf,
          py::arg("upper") = kInf, py::kw_only(), py::arg("n_threads") = 1,
          "search over n queries (GIL released): (next_model, mask, utility, quality, cost, "
          "evaluated).");
}

}  // namespace cascade_routing::bindings
