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


def test_dev_stdout_redirected_to_a_file_is_appended_to_not_replaced(tmp_path):
    """'--out /dev/stdout >> log' was refused as an existing file, and with --overwrite the log
    was renamed over: what it held was lost and the shell's descriptor wrote to a deleted file.
    The descriptor's file is written into after what it holds, as the shell's '>>' means."""
    code = textwrap.dedent("""
        import sys
        from speaker._atomic import write_text_atomic
        write_text_atomic("/dev/stdout", "new\\n", overwrite=sys.argv[1] == "1")
    """)
    log = tmp_path / "log.txt"
    for overwrite in ("0", "1"):
        log.write_text("earlier line\n")
        inode = log.stat().st_ino
        with open(log, "ab") as out:                     # the shell's '>> log.txt'
            r = subprocess.run([sys.executable, "-c", code, overwrite], stdout=out, stderr=subprocess.PIPE,
                               timeout=60)
        assert r.returncode == 0, r.stderr.decode()
        assert log.read_text() == "earlier line\nnew\n" and log.stat().st_ino == inode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.txt"]


def test_a_reader_that_closes_the_pipe_ends_the_command_quietly(tmp_path):
    """'speaker score --out /dev/stdout | head -1' printed 'error: cannot write /dev/stdout: Broken
    pipe' and 'speaker speakers --json | head -c 10' 'error: BrokenPipeError' (exit 1). A reader
    that has gone ends the command with 141 (what a shell reports for cat or sort there), nothing
    on stderr, for both ways a command writes standard output. The pipe's read end is closed
    before the command writes, so the write fails every time."""
    script = textwrap.dedent("""
        import sys
        from speaker import cli
        from speaker.cli import evaluate
        from speaker._atomic import write_text_atomic

        def run(args):
            if sys.argv[1] == "print":
                for i in range(100000):
                    print(f"line {i}")
            elif sys.argv[1] == "short":                 # still buffered when the command returns
                print("one line")
            else:
                write_text_atomic("/dev/stdout", "x" * 1_000_000, overwrite=False)
            return 0

        evaluate.run = run
        sys.exit(cli.main(["eval", "--scores", "s.txt", "--trials", "t.txt"], exiting=True))
    """)
    for how in ("print", "short", "output"):
        p = subprocess.Popen([sys.executable, "-c", script, how], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             cwd=tmp_path)
        p.stdout.close()                          # the reader is gone before the command writes
        err = p.stderr.read().decode()
        assert p.wait(timeout=120) == 141, (how, err)
        assert err == "", (how, err)
