"""The README's Python examples, run as tests, so that the front page cannot drift from the code.

Every fenced ```python block of README.md runs in a fresh namespace, in a temporary working
directory (the examples write files such as ``digits.lnet``). Two rules, both visible in the
README itself:

- **Skipping.** A block is skipped only when the line just before its fence (blank lines
  aside) is the HTML comment ``<!-- readme-test: skip (why) -->``; GitHub does not render it.
  Use it for blocks that need data outside the repository or run for minutes, and give the
  reason: it is the skip message. A block that needs an optional extra (ONNX, matplotlib) that
  is not installed is skipped with that reason too.
- **Shown output.** When a python block is followed (blank lines aside) by a plain ``` block,
  that block is the output the example prints: its lines must appear in the printed output in
  order, a line holding only ``...`` standing for any number of lines (as in doctest).
"""

from __future__ import annotations

import contextlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SKIP = re.compile(r"^<!--\s*readme-test:\s*skip\s*\((?P<why>.+)\)\s*-->$")
#: the most blocks that may be skipped: skipping must stay the exception
MAX_SKIPPED = 1
#: extras a block may need; missing, the block is skipped (the dev extra installs them all)
OPTIONAL = ("onnx", "onnxruntime", "matplotlib")


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the opening fence
    code: str
    skip: str | None  # the reason, when the README marks the block to be skipped
    output: str | None  # the plain block right after it: what the example prints


def python_blocks(text: str) -> list[Block]:
    """The ```python blocks of a Markdown text, with their skip marker and shown output."""
    lines = text.splitlines()
    fences: list[tuple[int, str, int]] = []  # (opening line index, info string, closing index)
    i = 0
    while i < len(lines):
        if lines[i].startswith("```"):
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), None)
            if end is None:
                raise ValueError(f"README line {i + 1}: the ``` fence is never closed")
            fences.append((i, lines[i][3:].strip(), end))
            i = end + 1
        else:
            i += 1
    blocks = []
    for n, (start, info, end) in enumerate(fences):
        if info != "python":
            continue
        before = [ln.strip() for ln in lines[:start] if ln.strip()]
        marker = SKIP.match(before[-1]) if before else None
        output = None
        if n + 1 < len(fences):
            nxt_start, nxt_info, nxt_end = fences[n + 1]
            between = lines[end + 1 : nxt_start]
            if nxt_info == "" and not any(ln.strip() for ln in between):
                output = "\n".join(lines[nxt_start + 1 : nxt_end])
        code = "\n".join(lines[start + 1 : end]) + "\n"
        blocks.append(Block(start + 1, code, marker["why"] if marker else None, output))
    return blocks


def matches_shown_output(shown: str, printed: str) -> bool:
    """Whether ``printed`` holds the lines of ``shown`` in order; a ``...`` line in ``shown``
    stands for any number of lines, anywhere else the lines must follow one another. Trailing
    spaces are ignored."""
    want = [ln.rstrip() for ln in shown.splitlines()]
    got = [ln.rstrip() for ln in printed.splitlines()]
    segments: list[list[str]] = [[]]
    for ln in want:
        if ln.strip() == "...":
            segments.append([])
        else:
            segments[-1].append(ln)
    pos = 0
    for k, seg in enumerate(segments):
        if not seg:
            continue
        anchored_start = k == 0
        starts = [pos] if anchored_start else range(pos, len(got) - len(seg) + 1)
        hit = next((s for s in starts if got[s : s + len(seg)] == seg), None)
        if hit is None:
            return False
        pos = hit + len(seg)
    return not segments[-1] or pos == len(got)  # no trailing "...": nothing may follow


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def test_the_readme_has_examples_and_few_are_skipped():
    assert len(BLOCKS) >= 3
    skipped = [b.line for b in BLOCKS if b.skip]
    assert len(skipped) <= MAX_SKIPPED, f"README blocks marked skip at lines {skipped}"


@pytest.mark.filterwarnings("ignore:Stochastic Optimizer. Maximum iterations")  # max_iter=30
@pytest.mark.parametrize("block", BLOCKS, ids=[f"README.md:{b.line}" for b in BLOCKS])
def test_readme_example_runs(block: Block, tmp_path, monkeypatch):
    if block.skip:
        pytest.skip(f"README.md:{block.line} marked skip: {block.skip}")
    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    namespace = {"__name__": "__readme__"}
    try:
        with contextlib.redirect_stdout(printed):
            exec(compile(block.code, f"README.md:{block.line}", "exec"), namespace)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in OPTIONAL:
            pytest.skip(f"README.md:{block.line} needs {exc.name}, not installed")
        raise
    if block.output is not None:
        assert matches_shown_output(block.output, printed.getvalue()), (
            f"README.md:{block.line}: the output shown after the example is not what it "
            f"prints; it printed:\n{printed.getvalue()}"
        )


# --- the rules themselves -----------------------------------------------------------------------

SAMPLE = """\
Text.

```python
print("a")
```

```
a
```

<!-- readme-test: skip (needs ../shared/data) -->

```python
open("../shared/data/x.csv")
```

```bash
make test
```

```python
x = 1
```
"""


def test_blocks_markers_and_shown_output_are_read():
    blocks = python_blocks(SAMPLE)
    assert [b.line for b in blocks] == [3, 13, 21]
    assert [b.skip for b in blocks] == [None, "needs ../shared/data", None]
    assert [b.output for b in blocks] == ["a", None, None]
    assert blocks[0].code == 'print("a")\n'
    with pytest.raises(ValueError, match="never closed"):
        python_blocks("```python\nx = 1\n")


def test_shown_output_rules():
    printed = "head\none\ntwo\nthree\ntail"
    assert matches_shown_output("head\none\ntwo\nthree\ntail", printed)
    assert matches_shown_output("head\n...\nthree\ntail", printed)
    assert matches_shown_output("head\n  ...\ntwo\n...", printed)
    assert not matches_shown_output("head\nthree\n...", printed)  # lines must follow each other
    assert not matches_shown_output("one\n...", printed)  # without a leading "...": from line 1
    assert not matches_shown_output("...\nthree", printed)  # without a trailing "...": to the end
    assert not matches_shown_output("head\n...\nthree\ntwo\n...", printed)  # in order
    assert not matches_shown_output("head\n...\n0.3169\n...", printed)


# --- the shell examples ---------------------------------------------------------------------------


def shell_commands(text: str) -> list[tuple[int, list[str]]]:
    """``(line, argv)`` of every ``$ lucidnet ...`` line of the README (a line ending in ``\\``
    continues on the next; a trailing ``# comment`` is left out)."""
    import shlex

    lines = text.splitlines()
    out = []
    for i, ln in enumerate(lines):
        if not ln.startswith("$ lucidnet "):
            continue
        cmd, j = ln[2:], i
        while cmd.rstrip().endswith("\\"):
            j += 1
            cmd = cmd.rstrip()[:-1] + " " + lines[j].strip()
        out.append((i + 1, shlex.split(cmd, comments=True)[1:]))
    return out


COMMANDS = shell_commands(README.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    "argv", [a for _, a in COMMANDS], ids=[f"README.md:{n}" for n, _ in COMMANDS]
)
def test_readme_commands_parse(argv):
    from lucidnet.cli.args import parse_args

    args = parse_args(argv)
    assert args.command == argv[0]


def test_the_tweets_example_needs_no_drop_list():
    tweets = [a for _, a in COMMANDS if a[0] == "train" and a[1].endswith("Tweets.csv")]
    assert len(tweets) == 1
    assert "--drop" not in tweets[0]
