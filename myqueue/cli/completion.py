"""``myqueue completion bash|zsh|tcsh``: the shell's tab-completion script, generated from the parser.

shtab writes the script from the argparse parser itself, so completion never drifts from the
commands and costs nothing at run time (no Python starts on <Tab>, unlike argcomplete).

    eval "$(myqueue completion bash)"      # or save it into ~/.local/share/bash-completion/completions/myqueue
"""

import argparse

import shtab

SHELLS = ("bash", "zsh", "tcsh")


def register(
    subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]", root: argparse.ArgumentParser
) -> None:
    parser = subparsers.add_parser("completion", help="print the shell completion script (bash, zsh or tcsh)")
    parser.add_argument("shell", choices=SHELLS, help="the shell to complete in")
    parser.set_defaults(func=lambda args: _print(root, args.shell))


def _print(root: argparse.ArgumentParser, shell: str) -> int:
    print(shtab.complete(root, shell=shell))
    return 0
