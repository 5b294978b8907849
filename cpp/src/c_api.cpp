// The C ABI (c_api.h) over the prepared decider: status codes instead of exceptions, a
// per-thread error message, no C++ type across the boundary.
#include "cascade_routing/c_api.h"

#include <cmath>
#include <exception>
#include <memory>
#include <new>
#include <string>

#include "cascade_routing/decider.hpp"

struct cr_decider {
    cascade_routing::Decider decider;
};

namespace {

using cascade_routing::Decider;
using cascade_routing::DeciderStatus;

std::string& last_error() {
    static thread_local std::string message;
    return message;
}

int report(DeciderStatus status, const char* what) {
    if (status == DeciderStatus::ok) return CR_OK;
    std::string& m = last_error();
    switch (status) {
        case DeciderStatus::non_finite:
            m = std::string(what) +
                ": a quality or cost is NaN, infinite or beyond 1e100 in magnitude, or a cost "
                "is negative";
            break;
        case DeciderStatus::bad_runset:
            m = std::string(what) +
                ": ran names a model >= k, or the run models of a cascade are not a prefix";
            break;
        case DeciderStatus::missing_runset:
            m = std::string(what) + ": the decider has no factor for this run-set";
            break;
        default:
            m = std::string(what) + ": failed";
    }
    return static_cast<int>(status);
}

int fail_with(DeciderStatus status, const std::string& message) {
    last_error() = message;
    return static_cast<int>(status);
}

// A new decider built by ``build`` into ``*out``, or a status code: no exception crosses the
// C boundary and nothing leaks when the build fails or throws.
template <class Build>
int make_decider(cr_decider** out, Build&& build) {
    try {
        auto d = std::make_unique<cr_decider>();
        std::string error;
        const DeciderStatus st = build(d->decider, &error);
        if (st != DeciderStatus::ok) return fail_with(st, error);
        *out = d.release();
        return CR_OK;
    } catch (const std::bad_alloc&) {
        return fail_with(DeciderStatus::bad_size, "out of memory"), CR_NO_MEMORY;
    } catch (const std::exception& e) {
        return fail_with(DeciderStatus::bad_argument, e.what());
    } catch (...) {
        return fail_with(DeciderStatus::bad_argument, "unexpected error");
    }
}

}  // namespace

extern "C" {

int cr_abi_version(void) { return CR_ABI_VERSION; }

const char* cr_last_error(void) { return last_error().c_str(); }

int cr_decider_create(int k, int mode, const double* normals, size_t n_samples,
                      const double* lam_cheap, const double* lam_expensive, size_t n_steps,
                      int64_t max_depth, int force_order, int prefixes_only, int digits,
                      double quality_lower, double quality_upper, const uint64_t* runsets,
                      const double* factors, size_t n_runsets, cr_decider** out) {
    if (out == nullptr) return fail_with(DeciderStatus::bad_argument, "out is null");
    *out = nullptr;
    if (mode < 0 || mode > 2)
        return fail_with(DeciderStatus::bad_argument,
                         "mode must be CR_MODE_EXACT, CR_MODE_INDEPENDENT or CR_MODE_COVARIANCE");
    cascade_routing::DeciderSpec spec;
    spec.k = k;
    spec.mode = static_cast<cascade_routing::Mode>(mode);
    spec.normals = normals;
    spec.n_samples = mode == CR_MODE_EXACT ? 0 : n_samples;
    spec.lam_cheap = lam_cheap;
    spec.lam_expensive = lam_expensive;
    spec.n_steps = n_steps;
    spec.options.max_depth = max_depth;
    spec.options.force_order = force_order != 0 || prefixes_only != 0;
    spec.options.prefixes_only = prefixes_only != 0;
    spec.options.prune = true;
    spec.options.digits = digits;
    spec.options.quality_lower = quality_lower;
    spec.options.quality_upper = quality_upper;
    spec.runsets = runsets;
    spec.factors = factors;
    spec.n_runsets = mode == CR_MODE_EXACT ? 0 : n_runsets;
    return make_decider(out, [&spec](Decider& decider, std::string* error) {
        return Decider::create(spec, decider, error);
    });
}

int cr_decider_load(const char* path, cr_decider** out) {
    if (out == nullptr) return fail_with(DeciderStatus::bad_argument, "out is null");
    *out = nullptr;
    return make_decider(out, [path](Decider& decider, std::string* error) {
        return cascade_routing::read_decider_file(path, decider, error);
    });
}

void cr_decider_free(cr_decider* decider) { delete decider; }

int cr_decider_n_models(const cr_decider* decider) {
    return decider == nullptr ? -1 : decider->decider.k();
}

int cr_decide(const cr_decider* decider, const double* quality, const double* cost, uint64_t ran,
              int expensive, int64_t* next_model, uint64_t* members, double* utility) {
    if (decider == nullptr || quality == nullptr || cost == nullptr || next_model == nullptr ||
        members == nullptr || utility == nullptr)
        return fail_with(DeciderStatus::bad_argument, "cr_decide: a pointer argument is null");
    try {
        cascade_routing::Decision d;
        const DeciderStatus st = decider->decider.decide(quality, cost, ran, expensive != 0, d);
        if (st != DeciderStatus::ok) return report(st, "cr_decide");
        *next_model = d.next_model;
        *members = d.members;
        *utility = d.utility;
        return CR_OK;
    } catch (const std::bad_alloc&) {
        return fail_with(DeciderStatus::bad_size, "out of memory"), CR_NO_MEMORY;
    } catch (...) {
        return fail_with(DeciderStatus::bad_argument, "cr_decide: unexpected error");
    }
}

int cr_decide_batch(const cr_decider* decider, size_t n, const double* quality, const double* cost,
                    const uint64_t* ran, const uint8_t* expensive, int64_t* next_model,
                    uint64_t* members, double* utility, size_t* failed_row) {
    if (decider == nullptr ||
        (n > 0 && (quality == nullptr || cost == nullptr || ran == nullptr ||
                   next_model == nullptr || members == nullptr || utility == nullptr)))
        return fail_with(DeciderStatus::bad_argument,
                         "cr_decide_batch: a pointer argument is null");
    try {
        std::size_t row = 0;
        const DeciderStatus st = decider->decider.decide_batch(
            n, quality, cost, ran, expensive, next_model, members, utility, &row, 1);
        if (failed_row != nullptr) *failed_row = row;
        if (st != DeciderStatus::ok)
            return report(st, ("cr_decide_batch (row " + std::to_string(row) + ")").c_str());
        return CR_OK;
    } catch (const std::bad_alloc&) {
        return fail_with(DeciderStatus::bad_size, "out of memory"), CR_NO_MEMORY;
    } catch (...) {
        return fail_with(DeciderStatus::bad_argument, "cr_decide_batch: unexpected error");
    }
}

}  // extern "C"
