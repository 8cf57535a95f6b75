"""The ``cogmeta`` process's exit: exit handlers and output survive the skipped teardown, and it falls back to a
normal exit where skipping could lose work (a non-daemon thread, a profiler, ``COGMETA_FULL_EXIT``)."""

import os
import subprocess
import sys
import textwrap


def _run(body: str, **environ) -> subprocess.CompletedProcess:
    script = textwrap.dedent(body)
    env = {**os.environ, **environ}
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)


def test_exit_handlers_run_and_buffered_output_is_flushed_with_the_status_given():
    done = _run("""
        import atexit, sys
        from cogmeta.process_exit import exit_process
        atexit.register(lambda: print("handler ran"))
        print("buffered", end="")  # no newline: still in the buffer when the process leaves
        sys.stderr.write("to stderr")
        exit_process(3)
        print("unreachable")
    """)
    assert done.returncode == 3
    assert done.stdout == "bufferedhandler ran\n"
    assert done.stderr == "to stderr"


def test_a_non_daemon_thread_is_waited_for_not_killed():
    done = _run("""
        import threading, time
        from cogmeta.process_exit import exit_process
        threading.Thread(target=lambda: (time.sleep(0.3), print("thread finished", flush=True))).start()
        exit_process(0)
    """)
    assert done.returncode == 0
    assert done.stdout == "thread finished\n"


def test_fast_exit_is_refused_under_a_profiler_a_tracer_or_the_environment_variable():
    done = _run("""
        import sys
        from cogmeta.process_exit import fast_exit_allowed
        print(fast_exit_allowed())
        sys.setprofile(lambda *args: None)
        print(fast_exit_allowed())
        sys.setprofile(None)
        sys.settrace(lambda *args: None)
        print(fast_exit_allowed())
        sys.settrace(None)
        print(fast_exit_allowed())
    """)
    assert done.stdout.split() == ["True", "False", "False", "True"]
    refused = _run("from cogmeta.process_exit import fast_exit_allowed; print(fast_exit_allowed())", COGMETA_FULL_EXIT="1")
    assert refused.stdout.strip() == "False"


def test_the_command_exits_with_mains_status():
    done = subprocess.run([sys.executable, "-m", "cogmeta", "evaluate", "/nonexistent/run"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "nonexistent" in done.stderr
