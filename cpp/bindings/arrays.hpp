// Checking NumPy arguments at the boundary: the only place that knows about Python.
//
// The compiled functions take C-contiguous, aligned, native-endian arrays of the exact dtype
// and never copy behind the caller's back. A wrong dtype raises TypeError; a wrong shape, a
// non-contiguous or unaligned array, or a bad option raises ValueError, each with the fix.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>

#include "cascade_routing/search.hpp"

namespace cascade_routing::bindings {

namespace py = pybind11;

template <class T>
constexpr const char* dtype_name();
template <>
constexpr const char* dtype_name<double>() {
    return "float64";
}
template <>
constexpr const char* dtype_name<std::uint8_t>() {
    return "uint8";
}
template <>
constexpr const char* dtype_name<std::int64_t>() {
    return "int64";
}
template <>
constexpr const char* dtype_name<std::uint64_t>() {
    return "uint64";
}

inline std::string shape_string(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t d = 0; d < a.ndim(); ++d) {
        if (d) s += ", ";
        s += std::to_string(a.shape(d));
    }
    if (a.ndim() == 1) s += ",";
    return s + ")";
}

inline std::string dtype_string(py::handle obj) {
    try {
        return py::str(obj.attr("dtype")).cast<std::string>();
    } catch (py::error_already_set&) {
        return "unknown";
    }
}

inline void require_layout(const py::array& a, const char* name, const char* dtype) {
    constexpr int kAligned = py::detail::npy_api::NPY_ARRAY_ALIGNED_;
    if (!(a.flags() & py::array::c_style) || !(a.flags() & kAligned))
        throw py::value_error(std::string(name) +
                              " must be a C-contiguous, aligned array; pass np.ascontiguousarray(" +
                              name + ", dtype=np." + dtype + ")");
}

//! The array behind `obj`, which must be an ndarray of dtype T (TypeError otherwise) and
//! C-contiguous and aligned (ValueError otherwise).
template <class T>
py::array input(py::handle obj, const char* name) {
    if (!py::isinstance<py::array_t<T>>(obj)) {
        const std::string got = py::isinstance<py::array>(obj)
                                    ? "dtype " + dtype_string(obj)
                                    : std::string(Py_TYPE(obj.ptr())->tp_name);
        throw py::type_error(std::string(name) + " must be a numpy array of dtype " +
                             dtype_name<T>() + ", got " + got + "; pass np.ascontiguousarray(" +
                             name + ", dtype=np." + dtype_name<T>() + ")");
    }
    py::array a = py::reinterpret_borrow<py::array>(obj);
    require_layout(a, name, dtype_name<T>());
    return a;
}

//! A 0/1 mask: uint8 or bool (the same bytes).
inline py::array mask_input(py::handle obj, const char* name) {
    if (!py::isinstance<py::array_t<std::uint8_t>>(obj) &&
        !py::isinstance<py::array_t<bool>>(obj)) {
        const std::string got = py::isinstance<py::array>(obj)
                                    ? "dtype " + dtype_string(obj)
                                    : std::string(Py_TYPE(obj.ptr())->tp_name);
        throw py::type_error(std::string(name) +
                             " must be a numpy array of dtype uint8 or bool, got " + got +
                             "; pass np.ascontiguousarray(" + name + ", dtype=np.uint8)");
    }
    py::array a = py::reinterpret_borrow<py::array>(obj);
    require_layout(a, name, "uint8");
    return a;
}

//! Check the shape; -1 in `expected` accepts any length, `what` explains the dimensions.
inline void require_shape(const py::array& a, const char* name,
                          std::initializer_list<py::ssize_t> expected, const char* what) {
    bool ok = a.ndim() == static_cast<py::ssize_t>(expected.size());
    py::ssize_t d = 0;
    for (py::ssize_t e : expected) {
        if (!ok) break;
        if (e >= 0 && a.shape(d) != e) ok = false;
        ++d;
    }
    if (ok) return;
    std::string want = "(";
    d = 0;
    for (py::ssize_t e : expected) {
        if (d++) want += ", ";
        want += e < 0 ? std::string("any") : std::to_string(e);
    }
    if (expected.size() == 1) want += ",";
    want += ")";
    throw py::value_error(std::string(name) + " must have shape " + what + " = " + want + ", got " +
                          shape_string(a));
}

//! Number of models from the leading array, checked against 1..kMaxModels.
inline int check_models(py::ssize_t k, const char* name) {
    if (k < 1 || k > kMaxModels)
        throw py::value_error(std::string(name) + " must describe 1 to " +
                              std::to_string(kMaxModels) + " models, got " + std::to_string(k) +
                              "; split the pool");
    return static_cast<int>(k);
}

inline Mode check_mode(int mode) {
    if (mode < 0 || mode > 2)
        throw py::value_error("mode must be 0 (exact), 1 (independent sd) or 2 (Cholesky), got " +
                              std::to_string(mode));
    return static_cast<Mode>(mode);
}

inline int check_digits(int digits) {
    if (digits < -1 || digits > kMaxDigits)
        throw py::value_error("digits must be -1 (no rounding) or between 0 and " +
                              std::to_string(kMaxDigits) + ", got " + std::to_string(digits));
    return digits;
}

//! `n_threads`: a Python int (or NumPy integer) in 0..kMaxThreads. Taken as an object so that
//! a huge value gets this message rather than pybind11's list of signatures.
inline int check_threads(py::handle obj) {
    if (PyBool_Check(obj.ptr()) || !PyIndex_Check(obj.ptr()))
        throw py::type_error(std::string("n_threads must be an int (0 = one per core), got ") +
                             Py_TYPE(obj.ptr())->tp_name);
    const auto value = py::reinterpret_steal<py::object>(PyNumber_Index(obj.ptr()));
    if (!value) throw py::error_already_set();
    int overflow = 0;
    const long long n = PyLong_AsLongLongAndOverflow(value.ptr(), &overflow);
    if (n == -1 && PyErr_Occurred()) throw py::error_already_set();
    if (overflow != 0 || n < 0 || n > kMaxThreads)
        throw py::value_error("n_threads must be between 0 (one per core) and " +
                              std::to_string(kMaxThreads) + ", got " +
                              py::repr(value).cast<std::string>());
    return static_cast<int>(n);
}

//! Quality bounds: lower < upper (so neither is NaN); -inf / inf mean no bound.
inline void check_bounds(double lower, double upper) {
    if (lower < upper) return;
    auto text = [](double x) { return py::repr(py::float_(x)).cast<std::string>(); };
    throw py::value_error(
        "the quality bounds must satisfy lower < upper (-inf / inf for no "
        "bound, never NaN), got lower=" +
        text(lower) + ", upper=" + text(upper));
}

//! The search options shared by search, search_batch and replay_two_phase, checked.
inline SearchOptions make_options(std::int64_t max_depth, bool force_order, bool prefixes_only,
                                  bool prune, int digits, double lower, double upper) {
    SearchOptions opt;
    opt.max_depth = max_depth;
    opt.force_order = force_order;
    opt.prefixes_only = prefixes_only;
    opt.prune = prune;
    opt.digits = check_digits(digits);
    check_bounds(lower, upper);
    opt.quality_lower = lower;
    opt.quality_upper = upper;
    return opt;
}

//! Normals (n_samples, k) for a sampled mode: at least one sample.
inline Normals check_normals(py::handle obj, int k) {
    py::array a = input<double>(obj, "normals");
    require_shape(a, "normals", {-1, k}, "(n_samples, k)");
    if (a.shape(0) < 1)
        throw py::value_error(
            "normals must hold at least one sample row when estimates are uncertain");
    return Normals{static_cast<const double*>(a.data()), static_cast<std::size_t>(a.shape(0))};
}

template <class T>
const T* ptr(const py::array& a) {
    return static_cast<const T*>(a.data());
}

template <class T>
T* mutable_ptr(py::array& a) {
    return static_cast<T*>(a.mutable_data());
}

//! Turn a failed core status into the matching Python exception.
inline void raise_status(Status status, const char* what) {
    switch (status) {
        case Status::ok:
            return;
        case Status::non_finite:
            throw py::value_error(std::string(what) +
                                  " holds NaN or infinite values (or values so large that the "
                                  "utility overflows); pass finite numbers");
        case Status::bad_size:
            throw py::value_error(std::string(what) + " has an unsupported size");
        case Status::cancelled:  // only a SignalWatch cancels, and it raises its own error
            throw std::runtime_error("the call into the core was cancelled");
    }
}

inline void raise_status(const BatchStatus& s, const char* what) {
    if (s.status == Status::ok) return;
    raise_status(s.status, (std::string(what) + " (row " + std::to_string(s.row) + ")").c_str());
}

void bind_search(py::module_& m);
void bind_replay(py::module_& m);
void bind_decider(py::module_& m);

}  // namespace cascade_routing::bindings
