// Splitting independent rows across threads (internal to the core).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#include "cascade_routing/search.hpp"

namespace cascade_routing::detail {

//! Hands out blocks of rows to workers. Rows are independent, so which thread takes which
//! block cannot change any result; dynamic hand-out balances rows of unequal cost.
class RowBlocks {
public:
    RowBlocks(std::size_t n, std::size_t block) : n_(n), block_(std::max<std::size_t>(block, 1)) {}
    bool next(std::size_t& begin, std::size_t& end) {
        const std::size_t b = next_.fetch_add(block_, std::memory_order_relaxed);
        if (b >= n_) return false;
        begin = b;
        end = std::min(n_, b + block_);
        return true;
    }

private:
    std::size_t n_;
    std::size_t block_;
    std::atomic<std::size_t> next_{0};
};

//! The lowest failing row of a batch, shared by its workers (locked only on failure).
class FirstFailure {
public:
    void report(std::size_t row, Status status) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!failed_ || row < first_.row) {
            failed_ = true;
            first_.row = row;
            first_.status = status;
        }
        any_.store(true, std::memory_order_relaxed);
    }
    //! Cheap check so that workers can stop early once a row failed.
    bool any() const { return any_.load(std::memory_order_relaxed); }
    BatchStatus result() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return failed_ ? first_ : BatchStatus{};
    }

private:
    mutable std::mutex mutex_;
    bool failed_ = false;
    BatchStatus first_;
    std::atomic<bool> any_{false};
};

//! How often the calling thread runs the cancellation hook while it waits for the others.
inline constexpr std::chrono::milliseconds kCancelWaitPoll{5};

//! Run `worker(blocks)` on up to `n_threads` threads (the calling thread included) and wait.
//! If a thread cannot be started, the others take its rows. An exception in a worker (only
//! std::bad_alloc in practice) is rethrown after every thread has joined. With a cancellation
//! hook, the calling thread keeps running it while it waits for the others (its own rows
//! done), so that a request to stop is still noticed.
template <class Worker>
void run_workers(int n_threads, RowBlocks& blocks, Worker& worker,
                 const Cancellation* cancel = nullptr) {
    std::vector<std::exception_ptr> errors(static_cast<std::size_t>(std::max(n_threads, 1)));
    std::vector<std::thread> pool;
    pool.reserve(errors.size());
    std::mutex mutex;
    std::condition_variable done;
    std::size_t finished = 0;
    for (int t = 1; t < n_threads; ++t) {
        try {
            pool.emplace_back([&worker, &blocks, &errors, &mutex, &done, &finished, t] {
                try {
                    worker(blocks);
                } catch (...) {
                    errors[static_cast<std::size_t>(t)] = std::current_exception();
                }
                {
                    std::lock_guard<std::mutex> lock(mutex);
                    ++finished;
                }
                done.notify_one();
            });
        } catch (const std::system_error&) {
            break;  // no more threads: the started ones and this one share all rows
        }
    }
    try {
        worker(blocks);
    } catch (...) {
        errors[0] = std::current_exception();
    }
    if (cancel != nullptr && cancel->poll != nullptr && !pool.empty()) {
        std::unique_lock<std::mutex> lock(mutex);
        const std::size_t started = pool.size();
        while (!done.wait_for(lock, kCancelWaitPoll, [&] { return finished == started; })) {
            lock.unlock();
            cancel->stop();
            lock.lock();
        }
    }
    for (auto& th : pool) th.join();
    for (auto& e : errors)
        if (e) std::rethrow_exception(e);
}

//! Block size: small enough to balance, large enough to keep the atomic off the hot path.
inline std::size_t block_size(std::size_t n, int n_threads) {
    if (n_threads <= 1) return std::max<std::size_t>(n, 1);
    const std::size_t per = n / (static_cast<std::size_t>(n_threads) * 16);
    return std::clamp<std::size_t>(per, 1, 256);
}

}  // namespace cascade_routing::detail
