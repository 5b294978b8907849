// Bindings of the strategy replay: replay_two_phase.
#include <cstdint>
#include <limits>
#include <string>

#include "arrays.hpp"
#include "cascade_routing/replay.hpp"
#include "interrupt.hpp"

namespace cascade_routing::bindings {
namespace {

py::tuple replay_two_phase_py(py::handle ante_quality_obj, py::handle post_quality_obj,
                              py::handle ante_sd_obj, py::handle post_sd_obj,
                              py::handle ante_cost_obj, py::handle post_cost_obj,
                              py::handle true_quality_obj, py::handle true_cost_obj,
                              py::handle lambdas_obj, py::handle prefer_obj, py::handle normals_obj,
                              bool use_sd, int strategy_int, py::handle thresholds_obj,
                              std::int64_t max_depth, bool force_order, bool prefixes_only,
                              bool prune, int digits, bool select_last, double lower, double upper,
                              py::handle n_threads_obj) {
    py::array ante_quality = input<double>(ante_quality_obj, "ante_quality");
    if (ante_quality.ndim() != 2)
        throw py::value_error("ante_quality must be 2-D (n, k), got shape " +
                              shape_string(ante_quality));
    const py::ssize_t n = ante_quality.shape(0);
    const int k = check_models(ante_quality.shape(1), "ante_quality");
    auto matrix = [&](py::handle obj, const char* name) {
        py::array a = input<double>(obj, name);
        require_shape(a, name, {n, k}, "(n, k)");
        return a;
    };
    py::array post_quality = matrix(post_quality_obj, "post_quality");
    py::array ante_cost = matrix(ante_cost_obj, "ante_cost");
    py::array post_cost = matrix(post_cost_obj, "post_cost");
    py::array true_quality = matrix(true_quality_obj, "true_quality");
    py::array true_cost = matrix(true_cost_obj, "true_cost");
    py::array prefer = mask_input(prefer_obj, "prefer_expensive");
    require_shape(prefer, "prefer_expensive", {n}, "(n,)");
    if (strategy_int != 0 && strategy_int != 1)
        throw py::value_error(
            "strategy must be 0 (supermodel search) or 1 (threshold cascade), got " +
            std::to_string(strategy_int));
    const Strategy strategy = static_cast<Strategy>(strategy_int);
    SearchOptions opt =
        make_options(max_depth, force_order, prefixes_only, prune, digits, lower, upper);
    const int n_threads = check_threads(n_threads_obj);

    ReplayInput in;
    in.ante_quality = ptr<double>(ante_quality);
    in.post_quality = ptr<double>(post_quality);
    in.ante_cost = ptr<double>(ante_cost);
    in.post_cost = ptr<double>(post_cost);
    in.true_quality = ptr<double>(true_quality);
    in.true_cost = ptr<double>(true_cost);
    in.prefer_expensive = ptr<std::uint8_t>(prefer);
    in.use_sd = use_sd;
    in.strategy = strategy;
    in.select_last = select_last;
    Normals normals;
    py::array ante_sd, post_sd, lambdas, thresholds;
    if (strategy == Strategy::supermodel_search) {
        lambdas = input<double>(lambdas_obj, "lambdas");
        if (lambdas.ndim() != 1 || lambdas.shape(0) < 1)
            throw py::value_error(
                "lambdas must be 1-D with at least one entry (one per step), "
                "got shape " +
                shape_string(lambdas));
        in.lambdas = ptr<double>(lambdas);
        in.n_lambdas = static_cast<std::size_t>(lambdas.shape(0));
        if (use_sd) {
            ante_sd = matrix(ante_sd_obj, "ante_sd");
            post_sd = matrix(post_sd_obj, "post_sd");
            in.ante_sd = ptr<double>(ante_sd);
            in.post_sd = ptr<double>(post_sd);
            normals = check_normals(normals_obj, k);
        }
    } else {
        thresholds = input<double>(thresholds_obj, "thresholds");
        if (thresholds.ndim() != 1 || thresholds.shape(0) < k - 1)
            throw py::value_error(
                "thresholds must be 1-D with at least k - 1 = " + std::to_string(k - 1) +
                " entries (one per step), got shape " + shape_string(thresholds));
        in.thresholds = ptr<double>(thresholds);
    }

    py::array_t<std::int64_t> selected(n), n_run(n);
    py::array_t<std::int64_t> order({n, static_cast<py::ssize_t>(k)});
    py::array_t<double> cost_out(n), quality_out(n);
    ReplayOutput out;
    out.selected = selected.mutable_data();
    out.n_run = n_run.mutable_data();
    out.order = order.mutable_data();
    out.cost = cost_out.mutable_data();
    out.quality = quality_out.mutable_data();

    BatchStatus status;
    SignalWatch watch;
    opt.cancel = watch.cancellation();
    {
        py::gil_scoped_release release;
        status = replay_two_phase(in, static_cast<std::size_t>(n), k, normals, opt, out, n_threads);
    }
    watch.rethrow();
    raise_status(status, "the replay input");
    return py::make_tuple(std::move(selected), std::move(n_run), std::move(order),
                          std::move(cost_out), std::move(quality_out));
}

}  // namespace

void bind_replay(py::module_& m) {
    m.def("replay_two_phase", &replay_two_phase_py, py::arg("ante_quality"),
          py::arg("post_quality"), py::arg("ante_sd"), py::arg("post_sd"), py::arg("ante_cost"),
          py::arg("post_cost"), py::arg("true_quality"), py::arg("true_cost"), py::arg("lambdas"),
          py::arg("prefer_expensive"), py::arg("normals"), py::arg("use_sd"), py::arg("strategy"),
          py::arg("thresholds"), py::arg("max_depth"), py::arg("force_order"),
          py::arg("prefixes_only"), py::arg("prune"), py::arg("digits"), py::arg("select_last"),
          py::arg("lower") = -std::numeric_limits<double>::infinity(),
          py::arg("upper") = std::numeric_limits<double>::infinity(), py::kw_only(),
          py::arg("n_threads") = 1,
          "Replay a strategy over n queries with two-phase estimates (GIL released): "
          "(selected, n_run, order, cost, quality).");
}

}  // namespace cascade_routing::bindings
