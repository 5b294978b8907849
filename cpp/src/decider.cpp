// The prepared decider (see decider.hpp).
#include "cascade_routing/decider.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>

#include "parallel.hpp"

namespace cascade_routing {
namespace {

inline std::uint64_t low_bits(int n) {  // bits 0..n-1, n in 0..64
    return n >= 64 ? ~std::uint64_t{0} : ((std::uint64_t{1} << n) - 1);
}

inline int popcount(std::uint64_t x) {
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_popcountll(x);
#else
    int n = 0;
    for (; x != 0; x &= x - 1) ++n;
    return n;
#endif
}

DeciderStatus fail(std::string* error, DeciderStatus status, const std::string& message) {
    if (error != nullptr) *error = message;
    return status;
}

// The largest magnitude of a multiplier, normal or factor a decider holds (as
// validation.MAX_MAGNITUDE): far beyond any real value, and small enough that the quality
// samples and utilities built from them cannot overflow (a larger one made every decision fail
// later as if its quality or cost were not finite).
constexpr double kMaxMagnitude = 1e100;

bool all_within(const double* a, std::size_t n) {
    bool ok = true;  // false for NaN too
    for (std::size_t i = 0; i < n; ++i) ok &= std::fabs(a[i]) <= kMaxMagnitude;
    return ok;
}

// Quality samples of every model from a Cholesky factor, as SearchWorkspace::fill_column_chol
// computes them: z_i = q_i, then z_i += u_j * L_ij for j = 0..i in this order, one rounding
// per product and per sum, so the same bits. Fused over j per block of samples (the block
// stays in registers instead of a load and a store of the column per j), and built twice:
// for the baseline ISA and, chosen at run time, for AVX (the same operations per lane).
#define CASCADE_ROUTING_FILL_CHOL_BODY                                               \
    constexpr std::size_t kBlock = 16;                                               \
    const std::size_t kk = static_cast<std::size_t>(k);                              \
    for (std::size_t i = 0; i < kk; ++i) {                                           \
        double* col = z + i * ns;                                                    \
        const double* li = chol + i * kk;                                            \
        std::size_t s0 = 0;                                                          \
        for (; s0 + kBlock <= ns; s0 += kBlock) {                                    \
            double acc[kBlock];                                                      \
            for (std::size_t t = 0; t < kBlock; ++t) acc[t] = quality[i];            \
            for (std::size_t j = 0; j <= i; ++j) {                                   \
                const double l = li[j];                                              \
                const double* u = normals_t + j * ns + s0;                           \
                for (std::size_t t = 0; t < kBlock; ++t) acc[t] += u[t] * l;         \
            }                                                                        \
            for (std::size_t t = 0; t < kBlock; ++t) col[s0 + t] = acc[t];           \
        }                                                                            \
        for (std::size_t s = s0; s < ns; ++s) {                                      \
            double v = quality[i];                                                   \
            for (std::size_t j = 0; j <= i; ++j) v += normals_t[j * ns + s] * li[j]; \
            col[s] = v;                                                              \
        }                                                                            \
    }

void fill_chol_generic(const double* quality, const double* chol, const double* normals_t, int k,
                       std::size_t ns, double* z){CASCADE_ROUTING_FILL_CHOL_BODY}
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__)) && \
    !defined(CASCADE_ROUTING_NO_AVX) && !defined(CASCADE_ROUTING_NO_SIMD)
#define CASCADE_ROUTING_DECIDER_AVX 1
__attribute__((target("avx"))) void fill_chol_avx(const double* quality, const double* chol,
                                                  const double* normals_t, int k, std::size_t ns,
                                                  double* z) {
    CASCADE_ROUTING_FILL_CHOL_BODY
}
bool has_avx() {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx");
}
#else
#define CASCADE_ROUTING_DECIDER_AVX 0
#endif
#undef CASCADE_ROUTING_FILL_CHOL_BODY

// The scratch memory of the calling thread, sized on first use and grown as needed: a
// decision allocates nothing once a thread has made one of the same size.
SearchWorkspace& thread_workspace() {
    static thread_local SearchWorkspace ws;
    return ws;
}

}  // namespace

DeciderStatus Decider::create(const DeciderSpec& s, Decider& d, std::string* error) {
    if (s.k < 1 || s.k > kMaxModels)
        return fail(error, DeciderStatus::bad_size,
                    "k must be between 1 and " + std::to_string(kMaxModels) + ", got " +
                        std::to_string(s.k));
    const int k = s.k;
    const std::size_t kk = static_cast<std::size_t>(k);
    const int mode = static_cast<int>(s.mode);
    if (mode < 0 || mode > 2)
        return fail(error, DeciderStatus::bad_argument,
                    "mode must be 0 (exact), 1 (independent sd) or 2 (Cholesky), got " +
                        std::to_string(mode));
    const bool sampled = s.mode != Mode::exact;
    if (sampled && (s.n_samples == 0 || s.normals == nullptr))
        return fail(error, DeciderStatus::bad_size,
                    "normals must hold at least one sample row when estimates are uncertain");
    if (s.n_steps < 1 || s.n_steps > static_cast<std::size_t>(kMaxModels) ||
        s.lam_cheap == nullptr || s.lam_expensive == nullptr)
        return fail(error, DeciderStatus::bad_size,
                    "lambdas must hold 1 to " + std::to_string(kMaxModels) +
                        " multipliers (cheap and expensive, the same number)");
    if (!all_within(s.lam_cheap, s.n_steps) || !all_within(s.lam_expensive, s.n_steps))
        return fail(error, DeciderStatus::non_finite,
                    "lambdas must be finite and at most 1e100 in magnitude");
    if (s.options.max_depth < 1)
        return fail(error, DeciderStatus::bad_argument,
                    "max_depth must be >= 1, got " + std::to_string(s.options.max_depth));
    if (!(s.max_work >= 1.0))
        return fail(error, DeciderStatus::bad_argument, "max_work must be >= 1");
    {
        const double work = search_work(k, 0, s.options.max_depth, s.options.prefixes_only,
                                        s.mode == Mode::exact ? 1 : s.n_samples);
        if (work > s.max_work)
            return fail(error, DeciderStatus::bad_size,
                        "one decision over " + std::to_string(k) + " models with max_depth " +
                            std::to_string(s.options.max_depth) + " may take " +
                            std::to_string(static_cast<long long>(work)) +
                            " candidate-samples > max_work " +
                            std::to_string(static_cast<long long>(s.max_work)) +
                            "; lower max_depth or n_samples, or raise max_work");
    }
    if (s.options.digits < -1 || s.options.digits > kMaxDigits)
        return fail(error, DeciderStatus::bad_argument,
                    "digits must be -1 (no rounding) or between 0 and " +
                        std::to_string(kMaxDigits) + ", got " + std::to_string(s.options.digits));
    if (!(s.options.quality_lower < s.options.quality_upper))
        return fail(error, DeciderStatus::bad_argument,
                    "the quality bounds must satisfy lower < upper (-inf / inf for no bound)");
    const std::size_t fsize = s.mode == Mode::covariance ? kk * kk : kk;
    if (sampled && s.n_runsets > 0 && (s.runsets == nullptr || s.factors == nullptr))
        return fail(error, DeciderStatus::bad_argument, "runsets and factors must be given");
    if (sampled && s.n_samples > (std::size_t{1} << 26) / kk)
        return fail(error, DeciderStatus::bad_size, "too many normals");

    Decider out;
    out.k_ = k;
    out.mode_ = s.mode;
    out.ns_ = sampled ? s.n_samples : 0;
    out.options_ = s.options;
    out.options_.cancel = nullptr;
    out.lam_cheap_.assign(s.lam_cheap, s.lam_cheap + s.n_steps);
    out.lam_expensive_.assign(s.lam_expensive, s.lam_expensive + s.n_steps);
    if (sampled) {
        const std::size_t ns = s.n_samples;
        out.normals_.assign(s.normals, s.normals + ns * kk);
        if (!all_within(out.normals_.data(), out.normals_.size()))
            return fail(error, DeciderStatus::non_finite,
                        "normals must be finite and at most 1e100 in magnitude");
        out.normals_t_.resize(ns * kk);
        for (std::size_t j = 0; j < kk; ++j)
            for (std::size_t r = 0; r < ns; ++r) out.normals_t_[j * ns + r] = s.normals[r * kk + j];
        // Sort the run-sets, keeping each factor with its mask.
        std::vector<std::size_t> idx(s.n_runsets);
        for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = i;
        std::sort(idx.begin(), idx.end(),
                  [&](std::size_t a, std::size_t b) { return s.runsets[a] < s.runsets[b]; });
        out.runsets_.resize(s.n_runsets);
        out.factors_.resize(s.n_runsets * fsize);
        const std::uint64_t all = low_bits(k);
        for (std::size_t i = 0; i < idx.size(); ++i) {
            const std::uint64_t m = s.runsets[idx[i]];
            if ((m & ~all) != 0)
                return fail(error, DeciderStatus::bad_runset,
                            "runsets[" + std::to_string(idx[i]) + "] names a model >= k");
            if (i > 0 && out.runsets_[i - 1] == m)
                return fail(error, DeciderStatus::bad_argument,
                            "runsets must be distinct; " + std::to_string(m) + " appears twice");
            out.runsets_[i] = m;
            const double* f = s.factors + idx[i] * fsize;
            if (!all_within(f, fsize))
                return fail(error, DeciderStatus::non_finite,
                            "factors of run-set " + std::to_string(m) +
                                " must be finite and at most 1e100 in magnitude");
            if (s.mode == Mode::independent) {
                for (std::size_t j = 0; j < fsize; ++j)
                    if (f[j] < 0.0)
                        return fail(
                            error, DeciderStatus::bad_argument,
                            "standard deviations must be >= 0 (run-set " + std::to_string(m) + ")");
            }
            std::copy(f, f + fsize, out.factors_.begin() + i * fsize);
        }
        if (k <= kDeciderDenseModels) {
            out.dense_.assign(std::size_t{1} << k, -1);
            for (std::size_t i = 0; i < out.runsets_.size(); ++i)
                out.dense_[out.runsets_[i]] = static_cast<std::int32_t>(i);
        }
    }
    d = std::move(out);
    return DeciderStatus::ok;
}

const double* Decider::factor(std::uint64_t ran) const {
    const std::size_t kk = static_cast<std::size_t>(k_);
    const std::size_t fsize = mode_ == Mode::covariance ? kk * kk : kk;
    std::size_t slot;
    if (!dense_.empty()) {
        const std::int32_t s = dense_[ran];
        if (s < 0) return nullptr;
        slot = static_cast<std::size_t>(s);
    } else {
        const auto it = std::lower_bound(runsets_.begin(), runsets_.end(), ran);
        if (it == runsets_.end() || *it != ran) return nullptr;
        slot = static_cast<std::size_t>(it - runsets_.begin());
    }
    return factors_.data() + slot * fsize;
}

bool Decider::has_runset(std::uint64_t ran) const {
    if ((ran & ~low_bits(k_)) != 0) return false;
    return mode_ == Mode::exact || factor(ran) != nullptr;
}

DeciderStatus Decider::decide(const double* quality, const double* cost, std::uint64_t ran,
                              bool expensive, Decision& out) const {
    const int k = k_;
    const std::size_t kk = static_cast<std::size_t>(k);
    if ((ran & ~low_bits(k)) != 0) return DeciderStatus::bad_runset;
    // A cascade's run models are a prefix of the model order.
    if (options_.prefixes_only && (ran & (ran + 1)) != 0) return DeciderStatus::bad_runset;
    const double* f = nullptr;
    if (mode_ != Mode::exact) {
        f = factor(ran);
        if (f == nullptr) return DeciderStatus::missing_runset;
    }
    // Finite and within +-kMaxMagnitude, as the strategy's checks (validation.MAX_MAGNITUDE):
    // a larger finite mean overflowed the mean over samples and returned an infinite utility.
    bool ok = true;  // false for NaN too
    for (std::size_t i = 0; i < kk; ++i)
        ok &= (std::fabs(quality[i]) <= kMaxMagnitude) & (cost[i] >= 0.0) &
              (cost[i] <= kMaxMagnitude);
    if (!ok) return DeciderStatus::non_finite;

    // The strategy's step: λ of step j = |R| (the last entry for later steps), and the
    // depth limit clamped to [j, k] as Strategy._plan does.
    const int j = popcount(ran);
    const std::vector<double>& lams = expensive ? lam_expensive_ : lam_cheap_;
    SearchInput in;
    in.quality = quality;
    in.cost = cost;
    in.lam = lams[std::min<std::size_t>(static_cast<std::size_t>(j), lams.size() - 1)];
    in.mode = mode_;
    in.prefer_expensive = expensive;
    std::uint8_t ran_bytes[kMaxModels];
    for (int i = 0; i < k; ++i) ran_bytes[i] = static_cast<std::uint8_t>((ran >> i) & 1u);
    in.ran = ran_bytes;
    SearchOptions opt = options_;
    opt.max_depth = std::max<std::int64_t>(std::min<std::int64_t>(options_.max_depth, k), j);

    SearchWorkspace& ws = thread_workspace();
    ws.reserve(k, ns_);
    if (mode_ != Mode::exact) {
        // Read this decider's transposed normals in place (same values as the row-major
        // normals the search reads: the same samples, bit for bit).
        ws.u_ = normals_t_.data();
        ws.u_column_step_ = ns_;
        ws.u_sample_step_ = 1;
        if (mode_ == Mode::independent) {
            for (int i = 0; i < k; ++i) ws.fill_column(i, quality[i], f[i], opt);
        } else {
#if CASCADE_ROUTING_DECIDER_AVX
            static const bool avx = has_avx();
            if (avx && options_.use_avx)
                fill_chol_avx(quality, f, normals_t_.data(), k, ns_, ws.z_);
            else
                fill_chol_generic(quality, f, normals_t_.data(), k, ns_, ws.z_);
#else
            fill_chol_generic(quality, f, normals_t_.data(), k, ns_, ws.z_);
#endif
            // Clip and the column statistics, as fill_column_chol ends (vectorised there).
            for (int i = 0; i < k; ++i) ws.finish_column(i, opt);
        }
    }
    SearchResult res;
    const Status st = search_prepared(in, k, opt, ws, res);
    if (st == Status::non_finite) return DeciderStatus::non_finite;
    if (st != Status::ok) return DeciderStatus::bad_size;
    out.next_model = res.next_model;
    out.members = res.mask;
    out.utility = res.utility;
    out.evaluated = res.evaluated;
    return DeciderStatus::ok;
}

DeciderStatus Decider::decide_batch(std::size_t n, const double* quality, const double* cost,
                                    const std::uint64_t* ran, const std::uint8_t* expensive,
                                    std::int64_t* next_model, std::uint64_t* members,
                                    double* utility, std::size_t* failed_row, int n_threads,
                                    const Cancellation* cancel) const {
    if (failed_row != nullptr) *failed_row = 0;
    if (n == 0) return DeciderStatus::ok;
    const std::size_t kk = static_cast<std::size_t>(k_);
    const int threads = resolve_threads(n_threads, n);
    detail::RowBlocks blocks(n, detail::block_size(n, threads));
    detail::FirstFailure failure;
    std::atomic<bool> cancelled{false};
    auto worker = [&](detail::RowBlocks& rows) {
        std::size_t begin = 0, end = 0;
        Decision d;
        while (rows.next(begin, end)) {
            for (std::size_t r = begin; r < end; ++r) {
                if (cancel != nullptr && cancel->stop()) {
                    cancelled.store(true, std::memory_order_relaxed);
                    return;
                }
                const DeciderStatus st = decide(quality + r * kk, cost + r * kk, ran[r],
                                                expensive != nullptr && expensive[r] != 0, d);
                if (st != DeciderStatus::ok) {
                    // FirstFailure keeps a search Status; carry ours in its integer value.
                    failure.report(r, static_cast<Status>(static_cast<int>(st)));
                    next_model[r] = -1;
                    members[r] = 0;
                    utility[r] = std::numeric_limits<double>::quiet_NaN();
                    continue;
                }
                next_model[r] = d.next_model;
                members[r] = d.members;
                utility[r] = d.utility;
            }
        }
    };
    detail::run_workers(threads, blocks, worker, cancel);
    if (cancelled.load()) return DeciderStatus::cancelled;
    const BatchStatus bs = failure.result();
    if (bs.status == Status::ok) return DeciderStatus::ok;
    if (failed_row != nullptr) *failed_row = bs.row;
    return static_cast<DeciderStatus>(static_cast<int>(bs.status));
}

}  // namespace cascade_routing

// ------------------------------------------------------------------ decider files

namespace cascade_routing {
namespace {

struct Crc32Table {
    std::uint32_t v[256];
    Crc32Table() {
        for (std::uint32_t i = 0; i < 256; ++i) {
            std::uint32_t c = i;
            for (int b = 0; b < 8; ++b) c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            v[i] = c;
        }
    }
};

bool little_endian() {
    const std::uint32_t one = 1;
    unsigned char first;
    std::memcpy(&first, &one, 1);
    return first == 1;
}

template <class T>
T read_at(const unsigned char* p, std::size_t offset) {
    T v;
    std::memcpy(&v, p + offset, sizeof(T));
    return v;
}

}  // namespace

std::uint32_t crc32(const void* data, std::size_t n, std::uint32_t crc) noexcept {
    static const Crc32Table table;
    const unsigned char* p = static_cast<const unsigned char*>(data);
    crc = ~crc;
    for (std::size_t i = 0; i < n; ++i) crc = table.v[(crc ^ p[i]) & 0xFFu] ^ (crc >> 8);
    return ~crc;
}

DeciderStatus read_decider_file(const char* path, Decider& out, std::string* error) {
    if (path == nullptr) return fail(error, DeciderStatus::bad_argument, "path is null");
    if (!little_endian())
        return fail(error, DeciderStatus::bad_argument,
                    "decider files are little-endian; this host is not");
    std::FILE* f = std::fopen(path, "rb");
    if (f == nullptr)
        return fail(error, DeciderStatus::bad_file,
                    std::string("cannot open the decider file ") + path);
    std::vector<unsigned char> bytes;
    unsigned char chunk[65536];
    std::size_t got;
    while ((got = std::fread(chunk, 1, sizeof chunk, f)) > 0) {
        bytes.insert(bytes.end(), chunk, chunk + got);
        if (bytes.size() > kDeciderFileMaxBytes) break;
    }
    std::fclose(f);
    const std::string where = std::string(path) + ": ";
    auto bad = [&](const std::string& why) {
        return fail(error, DeciderStatus::bad_file, where + why);
    };
    if (bytes.size() > kDeciderFileMaxBytes) return bad("larger than 256 MiB: not a decider file");
    if (bytes.size() < kDeciderFileHeader + 4 ||
        std::memcmp(bytes.data(), kDeciderFileMagic, 8) != 0)
        return bad("not a cascade-routing decider file (no CRDECIDE header)");
    const unsigned char* p = bytes.data();
    const auto version = read_at<std::uint32_t>(p, 8);
    if (version != kDeciderFileVersion)
        return bad("decider file format version " + std::to_string(version) +
                   "; this library reads version " + std::to_string(kDeciderFileVersion) +
                   ". Write it again with Decider.save_c");
    const std::size_t body = bytes.size() - 4;
    if (read_at<std::uint32_t>(p, body) != crc32(p, body))
        return bad("corrupted (the CRC-32 does not match its content)");
    if (read_at<std::uint32_t>(p, 12) != kDeciderFileHeader) return bad("unknown header size");
    const auto k = read_at<std::int32_t>(p, 16);
    const auto mode = read_at<std::int32_t>(p, 20);
    const auto ns = read_at<std::uint64_t>(p, 24);
    const auto n_steps = read_at<std::uint64_t>(p, 32);
    const auto max_depth = read_at<std::int64_t>(p, 40);
    const auto flags = read_at<std::uint32_t>(p, 48);
    const auto digits = read_at<std::int32_t>(p, 52);
    const auto lower = read_at<double>(p, 56);
    const auto upper = read_at<double>(p, 64);
    const auto n_runsets = read_at<std::uint64_t>(p, 72);
    const auto payload = read_at<std::uint64_t>(p, 80);
    if (k < 1 || k > kMaxModels || mode < 0 || mode > 2 || n_steps < 1 ||
        n_steps > static_cast<std::uint64_t>(kMaxModels) || ns > (1u << 26) ||
        n_runsets > (std::uint64_t{1} << 26))
        return bad("inconsistent header (k, mode, samples, steps or run-sets out of range)");
    const std::uint64_t kk = static_cast<std::uint64_t>(k);
    const std::uint64_t fsize = mode == 2 ? kk * kk : (mode == 1 ? kk : 0);
    const std::uint64_t want =
        8 * (2 * n_steps + (mode == 0 ? 0 : ns * kk) + n_runsets + n_runsets * fsize);
    if (payload != want || kDeciderFileHeader + payload != body)
        return bad("inconsistent sizes (the header does not match the arrays)");
    // Copy the arrays out (the payload need not be aligned for doubles).
    std::size_t at = kDeciderFileHeader;
    auto take = [&](std::size_t count, auto* dst) {
        // An empty array's data() may be null, and memcpy from or to null is undefined even
        // for 0 bytes (UBSan: an exact-means file, which has no normals).
        if (count != 0) std::memcpy(dst, p + at, count * 8);
        at += count * 8;
    };
    std::vector<double> lam_c(n_steps), lam_e(n_steps), normals(mode == 0 ? 0 : ns * kk);
    std::vector<std::uint64_t> runsets(n_runsets);
    std::vector<double> factors(n_runsets * fsize);
    take(n_steps, lam_c.data());
    take(n_steps, lam_e.data());
    take(normals.size(), normals.data());
    take(runsets.size(), runsets.data());
    take(factors.size(), factors.data());
    DeciderSpec spec;
    spec.k = k;
    spec.mode = static_cast<Mode>(mode);
    spec.normals = normals.data();
    spec.n_samples = mode == 0 ? 0 : static_cast<std::size_t>(ns);
    spec.lam_cheap = lam_c.data();
    spec.lam_expensive = lam_e.data();
    spec.n_steps = static_cast<std::size_t>(n_steps);
    spec.options.max_depth = max_depth;
    spec.options.force_order = (flags & 1u) != 0;
    spec.options.prefixes_only = (flags & 2u) != 0;
    spec.options.prune = (flags & 4u) != 0;
    spec.options.digits = digits;
    spec.options.quality_lower = lower;
    spec.options.quality_upper = upper;
    spec.runsets = runsets.data();
    spec.factors = factors.data();
    spec.n_runsets = static_cast<std::size_t>(n_runsets);
    std::string why;
    const DeciderStatus st = Decider::create(spec, out, &why);
    if (st != DeciderStatus::ok) return bad(why);
    return DeciderStatus::ok;
}

}  // namespace cascade_routing
