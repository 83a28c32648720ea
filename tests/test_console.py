"""Tests of src.console: the kit's log lines, quiet TensorFlow, and one-line errors and interruptions."""

import logging
import signal
import textwrap

import pytest

from conftest import run_process
from src import console
from src.errors import KitError


def test_configure_logging_prints_the_kits_lines_and_leaves_the_root_logger_alone(capsys):
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    console.configure_logging()
    console.configure_logging()  # twice: still one line per message
    logging.getLogger("src.data").info("data: hello")
    assert capsys.readouterr().out == "data: hello\n"
    assert root.handlers == handlers and root.level == level


def test_run_main_turns_kit_errors_and_ctrl_c_into_one_line(capsys):
    def fails():
        raise KitError("the data is bad; fix it. Received: x=1.")

    def interrupted():
        raise KeyboardInterrupt

    assert console.run_main(fails) == 2
    assert capsys.readouterr().err == "error: the data is bad; fix it. Received: x=1.\n"
    assert console.run_main(interrupted, interrupted="interrupted: nothing was changed.") == 130
    assert capsys.readouterr().err == "interrupted: nothing was changed.\n"
    assert console.run_main(lambda: 3) == 3 and console.run_main(lambda: None) == 0


def test_error_hook_makes_a_scripts_kit_error_one_line_and_status_2():
    script = textwrap.dedent("""
        from src import console
        from src.errors import KitError
        console.install_error_hook()
        raise KitError("Unknown thing. Received: thing='x'.")
    """)
    result = run_process(["-c", script])
    assert result.returncode == 2 and result.stderr == "error: Unknown thing. Received: thing='x'.\n"
    interrupted = run_process(["-c", "from src import console; console.install_error_hook(); raise KeyboardInterrupt"])
    assert interrupted.returncode == 130 and interrupted.stderr == console.TRAINING_INTERRUPTED + "\n"
    bug = run_process(["-c", "from src import console; console.install_error_hook(); 1 / 0"])
    assert bug.returncode == 1 and "Traceback" in bug.stderr and "ZeroDivisionError" in bug.stderr


def test_interrupt_behind_finds_a_ctrl_c_that_tracing_turned_into_a_type_error():
    script = textwrap.dedent("""
        from src import console
        console.install_error_hook()
        try:
            raise console.Terminated()
        except:  # as TensorFlow's trace_type_builder does
            raise TypeError("Could not generate a generic TraceType for None.")
    """)
    result = run_process(["-c", script])
    assert result.returncode == console.EXIT_TERMINATED and result.stderr == console.TRAINING_INTERRUPTED + "\n"
    assert console.interrupt_behind(TypeError("a bug")) is None


def test_quiet_tensorflow_drops_abseils_start_up_lines_and_keeps_the_rest(tmp_path):
    # A stand-in `tensorflow` that writes to the process's stderr as the real one's C++ start-up does.
    (tmp_path / "tensorflow").mkdir()
    (tmp_path / "tensorflow" / "__init__.py").write_text(textwrap.dedent("""
        import os
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n")
        os.write(2, b"I0000 00:00:1796228935.621441   19421 port.cc:153] oneDNN custom operations are on.\\n")
        os.write(2, b"E0000 00:00:1796228935.621441   19421 port.cc:99] a real error\\n")
        os.write(2, b"some warning of its own\\n")
    """))
    code = "from src import console; console.quiet_tensorflow(); import tensorflow; print('loaded')"
    result = run_process(["-c", code], env={"TF_CPP_MIN_LOG_LEVEL": "", "PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0 and result.stdout == "loaded\n"
    assert result.stderr.splitlines() == ["E0000 00:00:1796228935.621441   19421 port.cc:99] a real error",
                                          "some warning of its own"]
    verbose = run_process(["-c", code.replace("quiet_tensorflow()", "quiet_tensorflow(verbose=True)")],
                          env={"PYTHONPATH": str(tmp_path)})
    assert "oneDNN custom operations are on." in verbose.stderr


def test_quiet_tensorflow_hides_its_start_up_lines():
    code = "from src import console; console.quiet_tensorflow(); import tensorflow as tf; tf.constant(1.0) + 1"
    result = run_process(["-c", code], env={"TF_CPP_MIN_LOG_LEVEL": ""})
    assert result.returncode == 0 and result.stderr == "", result.stderr


# SIGTERM (what Kaggle's time limit, a scheduler or `timeout` sends) arrives in a kernel (a script whose error hook
# is installed) and in a command that `run_main` runs.
SIGTERM_SCRIPTS = {
    "kernel": """
import atexit, os, signal, time
from src import console
console.install_error_hook()
atexit.register(print, "atexit ran", flush=True)
try:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)
finally:
    print("finally ran", flush=True)
""",
    "command": """
import atexit, os, signal, sys, time
from src import console
atexit.register(print, "atexit ran", flush=True)


def command():
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
    finally:
        print("finally ran", flush=True)


sys.exit(console.run_main(command, interrupted="interrupted: nothing was changed."))
""",
}


@pytest.mark.parametrize("where", SIGTERM_SCRIPTS)
def test_sigterm_takes_ctrl_cs_way_out_in_one_line_with_status_143(where):
    result = run_process(["-c", SIGTERM_SCRIPTS[where]], timeout=60)

    assert result.returncode == 128 + signal.SIGTERM, result.stderr
    assert console.EXIT_TERMINATED == 128 + signal.SIGTERM
    assert result.stderr == {"kernel": console.TRAINING_INTERRUPTED,
                             "command": "interrupted: nothing was changed."}[where] + "\n"
    # The way Ctrl-C leaves: every `finally` (locks, temporaries), then the atexit handlers.
    assert result.stdout == "finally ran\natexit ran\n"


# What Windows gives: no fcntl module (None in sys.modules makes its import fail, as there), for a kernel and a
# command.
WITHOUT_FCNTL = {
    "kernel": "sys.argv = ['kernels/mnist-cnn/kernel.py', '--help']; runpy.run_path(sys.argv[0], run_name='__main__')",
    "command": "sys.argv = ['src', 'runs']; runpy.run_module('src', run_name='__main__')",
}


@pytest.mark.parametrize("where", WITHOUT_FCNTL)
def test_a_platform_without_fcntl_is_one_line(where):
    result = run_process(["-c", f"import runpy, sys; sys.modules['fcntl'] = None; {WITHOUT_FCNTL[where]}"])

    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: digit-kit runs on Linux and macOS: its run locks need fcntl")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
