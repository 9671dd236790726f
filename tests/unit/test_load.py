"""load: YAML text -> Spec with positions, or every problem at once at FILE:LINE:COL."""

from __future__ import annotations

from pathlib import Path

import pytest

from kvmnet.errors import Problem, SpecError
from kvmnet.spec.load import MAX_ALIASED, format_path, load, load_text

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "examples" / "seed.yaml"


def problems(text: str) -> list[Problem]:
    with pytest.raises(SpecError) as exc:
        load_text(text, "t.yaml")
    assert str(exc.value) == "\n".join(str(p) for p in exc.value.problems)
    return exc.value.problems


def where(text: str) -> list[tuple[int, int, str]]:
    return [(p.line, p.col, p.message) for p in problems(text)]


# ------------------------------------------------------------------ positions

def test_positions_block_style() -> None:
    _, pos = load_text("""\
networks:
  default:
    mode: nat
    ipv4:
      address: 192.168.122.1/24
      dhcp:
        - 192.168.122.2-192.168.122.99
        - 192.168.122.150-192.168.122.254
""")
    assert pos.keys[("networks",)] == (1, 1)
    assert pos.keys[("networks", "default")] == (2, 3)
    assert pos.at[("networks", "default", "mode")] == (3, 11)
    assert pos.keys[("networks", "default", "ipv4")] == (4, 5)
    assert pos.at[("networks", "default", "ipv4", "address")] == (5, 16)
    assert pos.at[("networks", "default", "ipv4", "dhcp", 0)] == (7, 11)
    assert pos.at[("networks", "default", "ipv4", "dhcp", 1)] == (8, 11)


def test_positions_flow_style() -> None:
    _, pos = load_text("""\
networks:
  default: {mode: nat, ipv4: {address: 192.168.122.1/24,
    dhcp: [192.168.122.2-192.168.122.99, 192.168.122.150-192.168.122.254]}}
""")
    assert pos.at[("networks", "default")] == (2, 12)
    assert pos.at[("networks", "default", "mode")] == (2, 19)
    assert pos.keys[("networks", "default", "ipv4")] == (2, 24)
    assert pos.at[("networks", "default", "ipv4", "address")] == (2, 40)
    assert pos.keys[("networks", "default", "ipv4", "dhcp")] == (3, 5)
    assert pos.at[("networks", "default", "ipv4", "dhcp", 0)] == (3, 12)
    assert pos.at[("networks", "default", "ipv4", "dhcp", 1)] == (3, 42)


def test_positions_of_errors_in_mixed_styles() -> None:
    """Errors deep in flow-inside-block-inside-flow land on the value itself."""
    got = where("""\
guests:
  web1:
    interfaces:
      - {network: default, mac: "52:54:00:zz:00:01"}
      - network: lan
        ipv4: 10.0.0.300
      - {network: lan,
         model: virtio-nett}
networks: {default: {mtu: big}, lan: {mode: bridge, bridge: br0, stp: maybe}}
""")
    assert [(ln, col) for ln, col, _ in got] == [(4, 33), (6, 15), (8, 17), (9, 27), (9, 71)]
    assert "guests.web1.interfaces.0.mac: '52:54:00:zz:00:01' is not a MAC" in got[0][2]
    assert "guests.web1.interfaces.1.ipv4: '10.0.0.300' is not an IP address" in got[1][2]
    assert "(did you mean 'virtio'?)" in got[2][2]
    assert got[3][2] == "networks.default.mtu: expected a whole number, got str 'big'"
    assert got[4][2] == "networks.lan.stp: expected true or false, got str 'maybe'"


def test_columns_count_characters_not_bytes() -> None:
    (p,) = problems('networks: {x: {dns: {txt: [{name: t, value: "été"}]}, mtu: 1}}\n')
    assert (p.line, p.col) == (1, 60)  # 62 if bytes were counted


def test_crlf_line_endings() -> None:
    text = "networks:\r\n  default:\r\n    mtu: 20\r\n"
    assert [(ln, col) for ln, col, _ in where(text)] == [(3, 10)]


def test_single_value_wrapped_into_a_list_points_at_the_value() -> None:
    """dhcp: and address: take one value or a list; an error in the one value must not
    speak of an index the user never wrote."""
    got = where("""\
networks:
  a: {ipv4: {address: 10.0.0.1/24, dhcp: 10.0.0.5..10.0.0.9}}
host:
  bridges:
    br0: {address: 10.1.0.1/33}
""")
    assert got[0][:2] == (2, 42) and got[0][2].startswith("networks.a.ipv4.dhcp: ")
    assert got[1][:2] == (5, 20) and got[1][2].startswith("host.bridges.br0.address: ")


def test_bad_name_points_at_the_key() -> None:
    got = where("networks:\n  a/b:\n    mode: nat\n")
    assert got[0][:2] == (2, 3)


def test_missing_key_points_at_the_mapping_that_lacks_it() -> None:
    got = where("networks:\n  a:\n    ipv4:\n      dhcp: 10.0.0.2-10.0.0.9\n")
    assert got == [(3, 5, "networks.a.ipv4.address: required key 'address' is missing: add it")]


def test_networks_named_like_pydantic_tags_are_kept_apart() -> None:
    """Names such as 'list', 'str', 'int' used to vanish from error paths (and two such
    errors collapsed into one)."""
    got = where("networks:\n  list: {mode: nt}\n  str: {mode: nt}\n  int: {mode: nt}\n")
    assert [m.split(":")[0] for _, _, m in got] == [
        "networks.list.mode", "networks.str.mode", "networks.int.mode"]


def test_problems_are_sorted_and_all_reported() -> None:
    got = problems("""\
guests:
  g: {interfaces: [{network: a, model: bogus}]}
networks:
  a: {mode: nt, mtu: 1}
  b: {frob: 1}
""")
    assert got == sorted(got, key=Problem.sort_key)
    assert len(got) == 4


# ------------------------------------------------------------------ duplicates, unknown keys

def test_duplicate_key_and_type_error_reported_together() -> None:
    got = where("""\
networks:
  default:
    mode: nat
    mtu: huge
    mode: route
""")
    assert got == [
        (4, 10, "networks.default.mtu: expected a whole number, got str 'huge'"),
        (5, 5, "duplicate key 'mode' (first at line 3): remove one of them or merge their "
               "contents"),
    ]


def test_duplicate_keys_at_several_levels() -> None:
    got = where("""\
host: {}
networks:
  a: {mode: nat, mode: nat}
  a: {}
guests: {g: {interfaces: []}, g: {}}
host: {}
""")
    assert [(ln, col) for ln, col, _ in got] == [(3, 18), (4, 3), (5, 31), (6, 1)]
    assert all("duplicate key" in m for _, _, m in got)


def test_first_duplicate_wins() -> None:
    """The first value is the one validated (the second is only reported)."""
    got = where("networks:\n  a: {mtu: 1}\n  a: {mtu: 1500}\n")
    assert [m.split(":")[0] for _, _, m in got] == [
        "networks.a.mtu", "duplicate key 'a' (first at line 2)"]


@pytest.mark.parametrize("text, key, suggestion", [
    ("netwroks: {}\n", "netwroks", "networks"),
    ("host: {bridgs: {}}\n", "bridgs", "bridges"),
    ("host: {bridges: {br0: {prots: []}}}\n", "prots", "ports"),
    ("networks: {a: {brigde: x}}\n", "brigde", "bridge"),
    ("networks: {a: {ipv4: {adress: 10.0.0.1/24}}}\n", "adress", "address"),
    ("networks: {a: {ipv4: {address: 10.0.0.1/24, dhpc: []}}}\n", "dhpc", "dhcp"),
    ("networks: {a: {ipv4: {address: 10.0.0.1/24, hosts: [{ipp: 10.0.0.2}]}}}\n", "ipp", "ip"),
    ("networks: {a: {dns: {forwarder: []}}}\n", "forwarder", "forwarders"),
    ("networks: {a: {forwards: [{proto: tcp, host_prot: 1, guest: g}]}}\n", "host_prot",
     "host_port"),
    ("guests: {g: {interfacs: []}}\n", "interfacs", "interfaces"),
    ("guests: {g: {interfaces: [{network: a, modle: virtio}]}}\n", "modle", "model"),
])
def test_did_you_mean(text: str, key: str, suggestion: str) -> None:
    msgs = [m for _, _, m in where(text) if "unknown key" in m]
    assert msgs and msgs[0].endswith(f"unknown key {key!r}: did you mean {suggestion!r}?")


def test_unknown_key_without_a_close_match_lists_the_allowed_keys() -> None:
    (_, _, msg), = where("guests: {g: {zzz: 1}}\n")
    assert msg == "guests.g.zzz: unknown key 'zzz': allowed keys here are interfaces, hosts, adopt"


# ------------------------------------------------------------------ types

@pytest.mark.parametrize("value, message", [
    ("true", "expected a whole number, got true"),
    ('"9000"', "expected a whole number, got str '9000': write it without quotes"),
    ("1500.0", "expected a whole number, got float 1500.0"),
    ("[1500]", "expected a whole number, got a list"),
    ("{}", "expected a whole number, got a mapping"),
])
def test_no_silent_coercion(value: str, message: str) -> None:
    (_, _, msg), = where(f"networks:\n  a:\n    mtu: {value}\n")
    assert msg == f"networks.a.mtu: {message}"


def test_null_where_a_mapping_is_needed_says_why() -> None:
    got = where("networks:\ndefault:\n  mode: nat\n")
    assert got[0][2].startswith("networks: expected a mapping, got nothing (null): write {} "
                                "for an empty one, or indent")
    assert "unknown key 'default'" in got[1][2]


def test_unreadable_value_reported_once() -> None:
    """A value YAML cannot construct is one problem, not also a pydantic one about null."""
    got = where("networks:\n  a:\n    mtu: !!int twelve\n")
    assert got == [(3, 10, "YAML: 'twelve' is not a valid !!int value: fix it or remove the "
                           "!!int tag")]


def test_format_path_quotes_odd_keys() -> None:
    assert format_path(("networks", "default", "ipv4", "dhcp", 0)) == "networks.default.ipv4.dhcp.0"
    assert format_path(("networks", "a\nb")) == "networks.'a\\nb'"
    assert format_path(("networks", "a/b", "mode")) == "networks.'a/b'.mode"


# ------------------------------------------------------------------ YAML features

def test_small_aliases_are_fine() -> None:
    spec, _ = load_text("""\
networks:
  a: {ipv4: {address: 10.0.0.1/24, lease_time: &lease 2h}}
  b: {ipv4: {address: 10.0.1.1/24, lease_time: *lease}}
""")
    assert spec.networks["a"].ipv4 == spec.networks["a"].ipv4
    assert str(spec.networks["b"].ipv4.lease_time) == "2h"  # type: ignore[union-attr]


def test_alias_bomb_is_stopped() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 12)]
    got = where("\n".join(lines))
    assert len(got) == 1
    assert f"expand to more than {MAX_ALIASED} values" in got[0][2]


@pytest.mark.parametrize("text", ["", "\n", "# nothing\n", "---\n", "null\n", "~\n"])
def test_empty_documents_are_an_empty_spec(text: str) -> None:
    spec, _ = load_text(text)
    assert spec.networks == {} and spec.guests == {} and spec.host.bridges == {}


def test_yaml_1_1_scalars() -> None:
    """What YAML 1.1 makes of unquoted words is what the spec gets: yes is true."""
    spec, _ = load_text("networks:\n  a: {stp: yes, autostart: off}\n")
    assert spec.networks["a"].stp is True and spec.networks["a"].autostart is False


def test_syntax_error_is_one_problem_with_a_hint() -> None:
    got = where("networks:\n  a:\n    domain: x: y\n")
    assert got == [(3, 14, "YAML syntax: mapping values are not allowed in this context: a "
                           "value containing ': ' must be quoted, or a key is mis-indented")]


# ------------------------------------------------------------------ files

def test_load_seed() -> None:
    spec, pos = load(SEED)
    assert set(spec.networks) == {"default", "mynet1", "lan"}
    assert pos.at[("networks", "mynet1", "ipv4", "address")] == (23, 21)


def test_load_reports_the_path_it_was_given(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text("networks: {a: {mtu: 1}}\n")
    with pytest.raises(SpecError) as exc:
        load(f)
    assert str(exc.value).startswith(f"{f}:1:21: error: networks.a.mtu:")
