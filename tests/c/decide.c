/* A service in C: load a decider file written by Decider.save_c, decide for every row of an
 * input file, print one line per decision, and time single decisions (tests/test_c_api.py).
 *
 *   decide <decider file> <rows file> [timing repeats]
 *
 * The rows file holds: n k, then per row k means, k costs, the run-set mask and the expensive
 * flag. Output: "next members utility(%.17g)" per row, then "timing median_ns p99_ns" when
 * timing repeats are asked for. */
#define _POSIX_C_SOURCE 199309L
#include <cascade_routing/c_api.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int compare(const void* a, const void* b) {
    const double x = *(const double*)a, y = *(const double*)b;
    return (x > y) - (x < y);
}

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

int main(int argc, char** argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: decide <decider file> <rows file> [timing repeats]\n");
        return 2;
    }
    if (cr_abi_version() != CR_ABI_VERSION) {
        fprintf(stderr, "ABI version %d, header %d\n", cr_abi_version(), CR_ABI_VERSION);
        return 1;
    }
    cr_decider* d = NULL;
    if (cr_decider_load(argv[1], &d) != CR_OK) {
        fprintf(stderr, "load: %s\n", cr_last_error());
        return 1;
    }
    FILE* f = fopen(argv[2], "r");
    size_t n = 0;
    int k = 0;
    if (f == NULL || fscanf(f, "%zu %d", &n, &k) != 2 || k != cr_decider_n_models(d)) {
        fprintf(stderr, "bad rows file\n");
        return 1;
    }
    double* q = malloc(sizeof(double) * n * (size_t)k);
    double* c = malloc(sizeof(double) * n * (size_t)k);
    uint64_t* ran = malloc(sizeof(uint64_t) * n);
    int* expensive = malloc(sizeof(int) * n);
    for (size_t i = 0; i < n; ++i) {
        for (int j = 0; j < k; ++j)
            if (fscanf(f, "%lf", &q[i * k + j]) != 1) return 1;
        for (int j = 0; j < k; ++j)
            if (fscanf(f, "%lf", &c[i * k + j]) != 1) return 1;
        if (fscanf(f, "%" SCNu64 " %d", &ran[i], &expensive[i]) != 2) return 1;
    }
    fclose(f);
    for (size_t i = 0; i < n; ++i) {
        int64_t next;
        uint64_t members;
        double utility;
        const int st =
            cr_decide(d, q + i * k, c + i * k, ran[i], expensive[i], &next, &members, &utility);
        if (st != CR_OK) {
            printf("error %d\n", st);
            continue;
        }
        printf("%" PRId64 " %" PRIu64 " %.17g\n", next, members, utility);
    }
    if (argc > 3 && n > 0) {
        const int repeats = atoi(argv[3]);
        double* times = malloc(sizeof(double) * (size_t)repeats);
        int64_t next;
        uint64_t members;
        double utility;
        for (int r = 0; r < repeats; ++r) {
            const size_t i = (size_t)r % n;
            const double t0 = now_ns();
            cr_decide(d, q + i * k, c + i * k, ran[i], expensive[i], &next, &members, &utility);
            times[r] = now_ns() - t0;
        }
        qsort(times, (size_t)repeats, sizeof(double), compare);
        printf("timing %.0f %.0f\n", times[repeats / 2], times[(size_t)(repeats * 0.99)]);
        free(times);
    }
    cr_decider_free(d);
    free(q);
    free(c);
    free(ran);
    free(expensive);
    return 0;
}
