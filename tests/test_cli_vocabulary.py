"""One vocabulary across commands: a list option is repeatable and takes comma lists, and giving it replaces its
default instead of adding to it."""

from __future__ import annotations

import pytest

from toolkit.cli import build_parser


def parse(*argv):
    return build_parser().parse_args(list(argv))


@pytest.mark.parametrize("command", [["export", "--style", "frost"], ["bench"]])
def test_a_list_option_may_be_repeated_or_comma_separated(command):
    repeated = parse(*command, "--target", "onnx", "--target", "tflite", "--size", "480x640", "--size", "256x256")
    commas = parse(*command, "--target", "onnx,tflite", "--size", "480x640,256x256")
    mixed = parse(*command, "--target", "onnx", "--target", "tflite", "--size", "480x640,256x256")
    for ns in (repeated, commas, mixed):
        assert ns.target == ["onnx", "tflite"] and ns.size == ["480x640", "256x256"]


def test_giving_a_list_option_replaces_its_default():
    assert parse("bench").target == ["onnx"] and parse("bench", "--target", "torch").target == ["torch"]
    assert parse("export", "--style", "frost").precision == ["fp32"]
    assert parse("export", "--style", "frost", "--precision", "int8").precision == ["int8"]


def test_bench_keeps_its_plural_spellings_as_aliases():
    ns = parse("bench", "--targets", "onnx,torch", "--sizes", "32x32", "--providers", "cpu")
    assert (ns.target, ns.size, ns.provider) == (["onnx", "torch"], ["32x32"], ["cpu"])


def test_defaults_are_not_shared_between_parses():
    parse("bench", "--target", "torch")
    assert parse("bench").target == ["onnx"]


@pytest.mark.parametrize("argv", [["stylize", "a.jpg", "--style", "frost"], ["compare", "a.safetensors"]])
def test_folder_outputs_are_spelled_out_with_out_dir_kept_as_an_alias(argv):
    assert {parse(*argv, flag, "x").out_dir for flag in ("--out", "--out-dir", "-o")} == {"x"}
