"""``python -m cogmeta ...`` (and ``torchrun ... -m cogmeta train ...``): the ``cogmeta`` command."""

from cogmeta.startup_gc import collector_paused, enable_for_command

with collector_paused():  # the command's modules are start-up state: no full collections over them (startup_gc)
    from cogmeta.cli import main
    from cogmeta.process_exit import exit_process


def run() -> None:
    """The console entry point: :func:`cogmeta.cli.main`, then :func:`cogmeta.process_exit.exit_process` (the
    exit handlers run; the interpreter's 0.6-0.8 s teardown is skipped). A framework's first import pauses the
    garbage collector and freezes what it created (``cogmeta.startup_gc``), and does not import IPython only to
    learn that no shell runs (``cogmeta.shell_probe``)."""
    enable_for_command()
    exit_process(main())


if __name__ == "__main__":  # not when a spawned worker process imports this module (`cogmeta sweep --workers`)
    run()
