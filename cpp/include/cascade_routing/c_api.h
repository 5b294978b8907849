/* The C ABI of cascade-routing: a prepared decider for services that are not Python
 * (docs/decider.md §5).
 *
 * Stable: functions are only ever added (CR_ABI_VERSION counts additions); existing ones keep
 * their signatures and meaning. Every function returns a status code (CR_OK = 0) except the
 * accessors and cr_decider_free; on failure, cr_last_error() gives a message for the calling
 * thread. A decider is immutable: any number of threads may decide with one decider at once.
 * Arrays are row-major float64 / uint64 / uint8 in the model order of the policy (the strategy's
 * model_order). Only plain C types and pointers cross the boundary, so cffi (ABI mode) and
 * Numba's nopython mode can call every function.
 */
#ifndef CASCADE_ROUTING_C_API_H
#define CASCADE_ROUTING_C_API_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#if defined(CASCADE_ROUTING_C_BUILD)
#define CR_API __declspec(dllexport)
#else
#define CR_API __declspec(dllimport)
#endif
#else
#define CR_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define CR_ABI_VERSION 1

/* Status codes. */
#define CR_OK 0
#define CR_NON_FINITE 1     /* a value is NaN, infinite or beyond 1e100, or a cost is negative */
#define CR_BAD_SIZE 2       /* a size outside its range */
#define CR_BAD_RUNSET 3     /* ran names a model >= k, or is not a prefix for a cascade */
#define CR_MISSING_RUNSET 4 /* the decider has no factor for this run-set */
#define CR_BAD_ARGUMENT 5   /* a null pointer or an invalid option */
#define CR_CANCELLED 6      /* (reserved) */
#define CR_BAD_FILE 7       /* a decider file that cannot be read, is corrupted or mismatched */
#define CR_NO_MEMORY 8      /* out of memory */

/* Uncertainty modes. */
#define CR_MODE_EXACT 0       /* exact means: no factors */
#define CR_MODE_INDEPENDENT 1 /* factors: k standard deviations per run-set */
#define CR_MODE_COVARIANCE 2  /* factors: the k x k lower Cholesky factor per run-set */

typedef struct cr_decider cr_decider;

/* CR_ABI_VERSION of the library (compare with the header's). */
CR_API int cr_abi_version(void);

/* The message of the last failed call on this thread ("" if none); valid until the next call
 * on this thread. */
CR_API const char* cr_last_error(void);

/* Build a decider from arrays (copied):
 *   k models; mode CR_MODE_*; normals (n_samples, k) (ignored in exact mode);
 *   lam_cheap, lam_expensive (n_steps,): the multiplier of step j = |ran| is
 *   lam[min(j, n_steps - 1)]; max_depth >= 1 (supermodel size, run models included);
 *   force_order, prefixes_only: 0 or 1; digits: -1 (no rounding) to 15;
 *   quality_lower < quality_upper (+-INFINITY: no bound);
 *   runsets (n_runsets,) distinct bit masks; factors (n_runsets, k, k) or (n_runsets, k). */
CR_API int cr_decider_create(int k, int mode, const double* normals, size_t n_samples,
                             const double* lam_cheap, const double* lam_expensive, size_t n_steps,
                             int64_t max_depth, int force_order, int prefixes_only, int digits,
                             double quality_lower, double quality_upper, const uint64_t* runsets,
                             const double* factors, size_t n_runsets, cr_decider** out);

/* Read a decider file written by cascade_routing's Decider.save_c (format version 1: header,
 * arrays, CRC-32); a truncated, corrupted or inconsistent file gives CR_BAD_FILE. */
CR_API int cr_decider_load(const char* path, cr_decider** out);

/* Free a decider (null is allowed). */
CR_API void cr_decider_free(cr_decider* decider);

/* Number of models, or -1 for null. */
CR_API int cr_decider_n_models(const cr_decider* decider);

/* One decision: quality, cost (k,); ran: bit i set = model i has run; expensive: 0 or 1 (the
 * query's gamma coin). Writes the next model (-1 = stop), the members of the best supermodel
 * and its utility. */
CR_API int cr_decide(const cr_decider* decider, const double* quality, const double* cost,
                     uint64_t ran, int expensive, int64_t* next_model, uint64_t* members,
                     double* utility);

/* n decisions: quality, cost (n, k); ran (n,); expensive (n,) or null (all cheap). Outputs
 * (n,). A failed row gets next_model -1 and utility NaN; the status of the lowest failed row
 * is returned and its index written to failed_row (if not null). */
CR_API int cr_decide_batch(const cr_decider* decider, size_t n, const double* quality,
                           const double* cost, const uint64_t* ran, const uint8_t* expensive,
                           int64_t* next_model, uint64_t* members, double* utility,
                           size_t* failed_row);

#ifdef __cplusplus
}
#endif

#endif /* CASCADE_ROUTING_C_API_H */
