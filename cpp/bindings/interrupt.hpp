// Ctrl-C during a long call into the core (issue: a search of 2^k candidates must not be
// deaf to SIGINT). Python runs signal handlers only in the main thread and only when that
// thread holds the GIL, so a call that released the GIL hands the core a cancellation hook:
// from the calling thread, every few tens of milliseconds, the hook takes the GIL back,
// runs the pending handlers (PyErr_CheckSignals) and, if one raised, sets the cancellation
// flag. The core then stops within a few thousand candidates, and the binding re-raises the
// handler's exception (KeyboardInterrupt for Ctrl-C) once the GIL is back.
#pragma once

#include <atomic>
#include <chrono>
#include <thread>

#include "arrays.hpp"

namespace cascade_routing::bindings {

//! Record the main thread (call once, at import, with the GIL held).
void record_main_thread();
//! Whether the current thread is the one Python runs signal handlers in.
bool on_main_thread();

//! A cancellation hook that watches for signals; create it with the GIL held, give
//! `cancellation()` to the core with the GIL released, then call `rethrow()` with the GIL
//! held again. Outside the main thread (where no handler can run) it is inert.
class SignalWatch {
public:
    //! How often the calling thread checks for signals (it needs the GIL to do so).
    static constexpr std::chrono::milliseconds kInterval{20};
    //! Hook calls between two reads of the clock (hook calls are 10 us to 1 ms apart).
    static constexpr int kCallsPerClockRead = 8;

    SignalWatch()
        : enabled_(on_main_thread()),
          caller_(std::this_thread::get_id()),
          last_(std::chrono::steady_clock::now()) {
        hook_.flag = &flag_;
        hook_.poll = &SignalWatch::poll;
        hook_.context = this;
    }
    SignalWatch(const SignalWatch&) = delete;
    SignalWatch& operator=(const SignalWatch&) = delete;

    //! The hook for SearchOptions::cancel (null outside the main thread: nothing to watch).
    const Cancellation* cancellation() const { return enabled_ ? &hook_ : nullptr; }

    //! With the GIL held: raise the exception of the signal handler, if one raised.
    void rethrow() const {
        if (interrupted_) throw py::error_already_set();
    }

private:
    static void poll(void* self) { static_cast<SignalWatch*>(self)->check(); }

    void check() {
        // Only the calling thread owns the state below (and may run handlers).
        if (interrupted_ || std::this_thread::get_id() != caller_) return;
        if (--countdown_ > 0) return;
        countdown_ = kCallsPerClockRead;
        const auto now = std::chrono::steady_clock::now();
        if (now - last_ < kInterval) return;
        last_ = now;
        // The thread released the GIL with its thread state kept: Ensure restores that
        // state, so the handler's exception stays set on it until rethrow().
        const PyGILState_STATE gil = PyGILState_Ensure();
        const bool raised = PyErr_CheckSignals() != 0;
        PyGILState_Release(gil);
        if (raised) {
            interrupted_ = true;
            flag_.store(true, std::memory_order_relaxed);
        }
    }

    bool enabled_;
    std::thread::id caller_;
    std::chrono::steady_clock::time_point last_;
    int countdown_ = kCallsPerClockRead;
    bool interrupted_ = false;
    std::atomic<bool> flag_{false};
    Cancellation hook_;
};

}  // namespace cascade_routing::bindings
