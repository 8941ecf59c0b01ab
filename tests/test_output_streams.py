"""An output named /dev/stdout is written into whatever standard output is: a pipe (the shell's
``speaker ... --out /dev/stdout | sort``) as well as a terminal or /dev/null."""
import subprocess
import sys
import textwrap


def test_dev_stdout_into_a_pipe_is_written_into():
    """/dev/stdout into a pipe resolves to ``pipe:[N]``, which no path opens: the output went
    nowhere and the command failed ('cannot write /proc/.../fd/pipe:[N]')."""
    code = textwrap.dedent("""
        from speaker._atomic import atomic_path, write_text_atomic
        write_text_atomic("/dev/stdout", "first line\\n", overwrite=False)
        with atomic_path("/dev/stdout", overwrite=False) as tmp:
            tmp.write_bytes(b"second\\n")
    """)
    r = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == b"first line\nsecond\n"
