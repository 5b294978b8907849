// Bindings of the prepared decider: _core.Decider (docs/decider.md).
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "arrays.hpp"
#include "cascade_routing/decider.hpp"
#include "interrupt.hpp"

namespace cascade_routing::bindings {
namespace {

// Worst-case work (candidates x samples) above which one decision releases the GIL.
constexpr double kReleaseGilWork = 65536.0;

void raise_decider(DeciderStatus status, const std::string& what, const std::string& message) {
    switch (status) {
        case DeciderStatus::ok:
            return;
        case DeciderStatus::non_finite:
            throw py::value_error(what +
                                  " holds NaN or infinite values, values beyond 1e100 in "
                                  "magnitude or a negative cost; pass finite numbers within "
                                  "+-1e100 and costs >= 0");
        case DeciderStatus::bad_runset:
            throw py::value_error(
                "ran must be a bit mask of run models below 2**k (for a cascade, a prefix of "
                "the model order: 0, 1, 3, 7, ...); got a mask outside that for " +
                what);
        case DeciderStatus::missing_runset:
            throw py::key_error("the decider has no factor for the run-set of " + what +
                                "; build it with that run-set in runsets");
        case DeciderStatus::cancelled:
            throw std::runtime_error("the call into the core was cancelled");
        default:
            throw py::value_error(message.empty() ? what + " is invalid" : message);
    }
}

std::uint64_t check_mask(py::handle obj, const char* name) {
    if (PyBool_Check(obj.ptr()) || !PyIndex_Check(obj.ptr()))
        throw py::type_error(std::string(name) +
                             " must be an int bit mask (bit i = model i has run), got " +
                             Py_TYPE(obj.ptr())->tp_name);
    const auto value = py::reinterpret_steal<py::object>(PyNumber_Index(obj.ptr()));
    if (!value) {  // e.g. a NumPy array of more than one element
        PyErr_Clear();
        throw py::type_error(std::string(name) + " must be an int bit mask, got " +
                             Py_TYPE(obj.ptr())->tp_name + " that is not a single integer");
    }
    const unsigned long long m = PyLong_AsUnsignedLongLong(value.ptr());
    if (m == static_cast<unsigned long long>(-1) && PyErr_Occurred()) {
        PyErr_Clear();
        throw py::value_error(std::string(name) + " must be a bit mask between 0 and 2**64 - 1");
    }
    return static_cast<std::uint64_t>(m);
}

class PyDecider {
public:
    PyDecider(int k, int mode, py::handle normals_obj, py::handle lam_cheap_obj,
              py::handle lam_expensive_obj, std::int64_t max_depth, bool force_order,
              bool prefixes_only, int digits, double lower, double upper, py::handle runsets_obj,
              py::handle factors_obj, double max_work) {
        check_models(k, "k");
        const Mode m = check_mode(mode);
        SearchOptions opt = make_options(max_depth, force_order || prefixes_only, prefixes_only,
                                         true, digits, lower, upper);
        if (max_depth < 1)
            throw py::value_error("max_depth must be >= 1, got " + std::to_string(max_depth));
        py::array lc = input<double>(lam_cheap_obj, "lam_cheap");
        require_shape(lc, "lam_cheap", {-1}, "(n_steps,)");
        py::array le = input<double>(lam_expensive_obj, "lam_expensive");
        require_shape(le, "lam_expensive", {lc.shape(0)}, "(n_steps,)");
        DeciderSpec spec;
        spec.k = k;
        spec.mode = m;
        spec.lam_cheap = ptr<double>(lc);
        spec.lam_expensive = ptr<double>(le);
        spec.n_steps = static_cast<std::size_t>(lc.shape(0));
        spec.options = opt;
        spec.max_work = max_work;
        py::array normals, runsets, factors;
        if (m != Mode::exact) {
            const Normals n = check_normals(normals_obj, k);
            spec.normals = n.data;
            spec.n_samples = n.n_samples;
            runsets = input<std::uint64_t>(runsets_obj, "runsets");
            require_shape(runsets, "runsets", {-1}, "(n_runsets,)");
            const py::ssize_t r = runsets.shape(0);
            factors = input<double>(factors_obj, "factors");
            if (m == Mode::covariance)
                require_shape(factors, "factors", {r, k, k}, "(n_runsets, k, k)");
            else
                require_shape(factors, "factors", {r, k}, "(n_runsets, k)");
            spec.runsets = ptr<std::uint64_t>(runsets);
            spec.factors = ptr<double>(factors);
            spec.n_runsets = static_cast<std::size_t>(r);
        }
        std::string error;
        const DeciderStatus st = Decider::create(spec, decider_, &error);
        if (st != DeciderStatus::ok) throw py::value_error(error);
        // Worst case of one decision from the empty run-set, to choose whether to release
        // the GIL (as _core.search does).
        work_ = search_work(k, 0, max_depth, prefixes_only, decider_.n_samples());
    }

    py::tuple decide(py::handle quality_obj, py::handle cost_obj, py::handle ran_obj,
                     bool expensive) const {
        const int k = decider_.k();
        py::array quality = input<double>(quality_obj, "quality");
        require_shape(quality, "quality", {k}, "(k,)");
        py::array cost = input<double>(cost_obj, "cost");
        require_shape(cost, "cost", {k}, "(k,)");
        const std::uint64_t ran = check_mask(ran_obj, "ran");
        Decision d;
        DeciderStatus st;
        if (work_ >= kReleaseGilWork) {
            py::gil_scoped_release release;
            st = decider_.decide(ptr<double>(quality), ptr<double>(cost), ran, expensive, d);
        } else {
            st = decider_.decide(ptr<double>(quality), ptr<double>(cost), ran, expensive, d);
        }
        raise_decider(st, "the decision input (quality, cost, ran)", "");
        return py::make_tuple(d.next_model, d.members, d.utility);
    }

    py::tuple decide_batch(py::handle quality_obj, py::handle cost_obj, py::handle ran_obj,
                           py::handle expensive_obj, py::handle n_threads_obj) const {
        const int k = decider_.k();
        py::array quality = input<double>(quality_obj, "quality");
        if (quality.ndim() != 2)
            throw py::value_error("quality must be 2-D (n, k), got shape " + shape_string(quality));
        const py::ssize_t n = quality.shape(0);
        require_shape(quality, "quality", {n, k}, "(n, k)");
        py::array cost = input<double>(cost_obj, "cost");
        require_shape(cost, "cost", {n, k}, "(n, k)");
        py::array ran = input<std::uint64_t>(ran_obj, "ran");
        require_shape(ran, "ran", {n}, "(n,)");
        py::array expensive = mask_input(expensive_obj, "expensive");
        require_shape(expensive, "expensive", {n}, "(n,)");
        const int n_threads = check_threads(n_threads_obj);
        py::array_t<std::int64_t> next_model(n);
        py::array_t<std::uint64_t> members(n);
        py::array_t<double> utility(n);
        std::size_t row = 0;
        DeciderStatus st;
        SignalWatch watch;
        {
            py::gil_scoped_release release;
            st = decider_.decide_batch(static_cast<std::size_t>(n), ptr<double>(quality),
                                       ptr<double>(cost), ptr<std::uint64_t>(ran),
                                       ptr<std::uint8_t>(expensive), next_model.mutable_data(),
                                       members.mutable_data(), utility.mutable_data(), &row,
                                       n_threads, watch.cancellation());
        }
        watch.rethrow();
        raise_decider(st, "the decision input (row " + std::to_string(row) + ")", "");
        return py::make_tuple(std::move(next_model), std::move(members), std::move(utility));
    }

    bool has_runset(py::handle ran_obj) const {
        return decider_.has_runset(check_mask(ran_obj, "ran"));
    }
    int k() const { return decider_.k(); }
    int mode() const { return static_cast<int>(decider_.mode()); }
    std::size_t n_samples() const { return decider_.n_samples(); }
    std::size_t n_runsets() const { return decider_.n_runsets(); }

private:
    Decider decider_;
    double work_ = 0.0;
};

}  // namespace

void bind_decider(py::module_& m) {
    py::class_<PyDecider>(m, "Decider",
                          "A prepared decider: policy, normals and a factor per run-set "
                          "(immutable; thread-safe).")
        .def(py::init<int, int, py::handle, py::handle, py::handle, std::int64_t, bool, bool, int,
                      double, double, py::handle, py::handle, double>(),
             py::arg("k"), py::arg("mode"), py::arg("normals"), py::arg("lam_cheap"),
             py::arg("lam_expensive"), py::arg("max_depth"), py::arg("force_order"),
             py::arg("prefixes_only"), py::arg("digits"), py::arg("lower"), py::arg("upper"),
             py::arg("runsets"), py::arg("factors"), py::kw_only(),
             py::arg("max_work") = cascade_routing::kDefaultMaxWork)
        .def("decide", &PyDecider::decide, py::arg("quality"), py::arg("cost"), py::arg("ran"),
             py::arg("expensive"), "One decision: (next_model, members mask, utility).")
        .def("decide_batch", &PyDecider::decide_batch, py::arg("quality"), py::arg("cost"),
             py::arg("ran"), py::arg("expensive"), py::kw_only(), py::arg("n_threads") = 1,
             "Decisions for n rows (GIL released): (next_model, members, utility) arrays.")
        .def("has_runset", &PyDecider::has_runset, py::arg("ran"),
             "Whether the table holds a factor for run-set ran (always True for exact means).")
        .def_property_readonly("k", &PyDecider::k)
        .def_property_readonly("mode", &PyDecider::mode)
        .def_property_readonly("n_samples", &PyDecider::n_samples)
        .def_property_readonly("n_runsets", &PyDecider::n_runsets);
}

}  // namespace cascade_routing::bindings
