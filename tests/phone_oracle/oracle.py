#!/usr/bin/env python3
"""Differential oracle for leadstream's phone normalization.

Generates >= 100,000 phone-like inputs deterministically, computes the expected
answer with libphonenumber's Python port `phonenumbers` under the same contract
as `leadstream_pipeline::phone` (add a missing '+' or replace a leading '00',
refuse over 250 characters, parse with no default region, accept iff
is_possible_number, answer E.164), runs the inputs through the real normalizer
(the `normalize_lines` example of leadstream-pipeline) and compares.

Requires phonenumbers==9.0.42 -- the libphonenumber metadata version of the
`rlibphonenumber = "=2.2.15"` pin in the root Cargo.toml. The two pins move
together.

    pip install phonenumbers==9.0.42
    python3 tests/phone_oracle/oracle.py            # builds with cargo run
    python3 tests/phone_oracle/oracle.py --bin target/debug/examples/normalize_lines

Prints the first 20 disagreements and a last line
`phone oracle: N passed, M failed`; exits 1 on any disagreement not listed in
exceptions.txt (one input as a JSON string, a tab, the reason, per line).
"""

import argparse
import json
import os
import random
import subprocess
import sys

import phonenumbers as pn
from phonenumbers import PhoneNumberFormat, PhoneNumberType
from phonenumbers.phonenumberutil import COUNTRY_CODES_FOR_NON_GEO_REGIONS

PINNED = "9.0.42"  # moves together with rlibphonenumber's metadata version
MAX_INPUT_CHARS = 250
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))

# ---------------------------------------------------------------------------
# The contract, in Python
# ---------------------------------------------------------------------------

LEADING_SPACE = " \t\n\r\x0c"


def international_form(raw):
    t = raw.lstrip(LEADING_SPACE)
    if t.startswith("+") or t.startswith("\uff0b"):
        return raw
    if t.startswith("00"):
        return "+" + t[2:]
    return "+" + t


def expected(raw):
    s = international_form(raw)
    if len(s) > MAX_INPUT_CHARS:
        return ""
    try:
        number = pn.parse(s, None)
    except pn.NumberParseException:
        return ""
    if not pn.is_possible_number(number):
        return ""
    return pn.format_number(number, PhoneNumberFormat.E164)


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------

TYPES = [
    PhoneNumberType.FIXED_LINE,
    PhoneNumberType.MOBILE,
    PhoneNumberType.TOLL_FREE,
    PhoneNumberType.PREMIUM_RATE,
    PhoneNumberType.SHARED_COST,
    PhoneNumberType.VOIP,
    PhoneNumberType.PERSONAL_NUMBER,
    PhoneNumberType.PAGER,
    PhoneNumberType.UAN,
    PhoneNumberType.VOICEMAIL,
]

# Decimal digits of other scripts (all \p{Nd}: libphonenumber reads them).
DIGIT_ZEROS = [0xFF10, 0x0660, 0x06F0, 0x0966, 0x09E6, 0x0E50, 0x1040, 0x1D7CE]
SEPARATORS = [" ", "-", ".", "(", ")", "/", "\u00a0", "\u2010", "\u2013", "\u3000", "\uff0d", "~", "[", "]", "\u200b"]
EXTENSIONS = [" ext. 123", " x12", ";ext=5", " ext 4567", " #89", ",,12", "; 77", " extn: 9", " anexo 12", "\uff58 12", " доб 5"]
VANITY = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def examples():
    """(cc, nsn, national_prefix, PhoneNumber) of every example number."""
    out = []
    for region in sorted(pn.SUPPORTED_REGIONS):
        md = pn.PhoneMetadata.metadata_for_region(region)
        for t in TYPES:
            n = pn.example_number_for_type(region, t)
            if n is not None:
                out.append((n.country_code, pn.national_significant_number(n), md.national_prefix or "", n))
    for cc in sorted(COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        md = pn.PhoneMetadata.metadata_for_nongeo_region(cc)
        for desc in [md.general_desc, md.toll_free, md.premium_rate, md.shared_cost, md.voip,
                     md.personal_number, md.uan, md.mobile, md.fixed_line]:
            if desc is not None and desc.example_number:
                n = pn.parse("+%d%s" % (cc, desc.example_number), None)
                out.append((cc, desc.example_number, md.national_prefix or "", n))
    return out


def in_script(s, zero):
    return "".join(chr(zero + int(c)) if c.isdigit() and c.isascii() else c for c in s)


def group(nsn, sep, rng):
    parts, i = [], 0
    while i < len(nsn):
        k = rng.randint(1, 4)
        parts.append(nsn[i:i + k])
        i += k
    return sep.join(parts)


def spellings(cc, nsn, np, number, rng):
    e164 = "+%d%s" % (cc, nsn)
    yield e164
    yield pn.format_number(number, PhoneNumberFormat.INTERNATIONAL)
    yield pn.format_number(number, PhoneNumberFormat.NATIONAL)
    yield pn.format_number(number, PhoneNumberFormat.RFC3966)
    yield "%d%s" % (cc, nsn)
    yield "00%d%s" % (cc, nsn)
    yield "00 %d %s" % (cc, group(nsn, " ", rng))
    for sep in [" ", "-", "."]:
        yield "+%d%s%s" % (cc, sep, group(nsn, sep, rng))
        yield "%d%s%s" % (cc, sep, group(nsn, sep, rng))
    yield "+%d (%s) %s" % (cc, nsn[:2], group(nsn[2:], "-", rng))
    yield "(%d) %s" % (cc, group(nsn, " ", rng))
    yield "+%d (0) %s" % (cc, group(nsn, " ", rng))
    yield "+%d %s%s" % (cc, np, nsn)
    yield "+%d%s%s%s" % (cc, np, np, nsn)
    yield "%s%s" % (np, nsn)
    yield "  " + e164
    yield e164 + " \n"
    yield "\t%d %s\r" % (cc, nsn)
    yield e164 + rng.choice(EXTENSIONS)
    yield "+%d %s%s" % (cc, group(nsn, " ", rng), rng.choice(EXTENSIONS))
    yield in_script(e164, rng.choice(DIGIT_ZEROS))
    yield "\uff0b" + in_script("%d %s" % (cc, nsn), 0xFF10)
    yield "+%d%s%s" % (cc, rng.choice(SEPARATORS), group(nsn, rng.choice(SEPARATORS), rng))
    yield "tel:" + e164
    yield "tel:%s;phone-context=+%d" % (nsn, cc)
    yield "tel:%s;phone-context=example.com;isub=12" % nsn
    yield "%s;phone-context=%s;a=tel:" % (nsn, e164)
    yield "%s tel:;phone-context=+%d %s" % (cc, cc, group(nsn, " ", rng))
    yield "Tel.: " + e164
    yield "+" + e164
    # Vanity: the last 3-7 digits as letters.
    k = rng.randint(3, 7)
    yield "+%d %s%s" % (cc, nsn[:-k], "".join(rng.choice(VANITY) for _ in range(min(k, len(nsn)))))


def mutations(cc, nsn, np, rng):
    digits = list(nsn)
    for _ in range(4):
        d = digits[:]
        op = rng.randrange(3)
        i = rng.randrange(len(d) + (1 if op == 0 else 0)) if d else 0
        if op == 0:
            d.insert(i, rng.choice("0123456789"))
        elif op == 1 and d:
            del d[i]
        elif d:
            d[i] = rng.choice("0123456789")
        m = "".join(d)
        yield "+%d%s" % (cc, m)
        yield "%d %s" % (cc, m)
    yield "+%d0%s" % (cc, nsn)
    yield "+%d1%s" % (cc, nsn)
    yield "+%d8%s" % (cc, nsn)
    yield "+%d%s" % (cc, nsn[:-1])
    yield "+%d%s%s" % (cc, nsn, rng.choice("0123456789"))
    yield "+%d%s%s" % (cc, nsn, "".join(rng.choice("0123456789") for _ in range(rng.randint(2, 6))))


def random_scalar(rng):
    while True:
        c = rng.randrange(0x20, 0x3000)
        if not 0xD800 <= c <= 0xDFFF:
            return chr(c)


ALPHABET = list("0123456789" * 4) + list("+() -./#,;x*~") + list("abcXYZ") + SEPARATORS + [
    "\uff0b", "\n", "\t", "\x0c", "\r", "ext", "00", "tel:", ";phone-context=", ";isub=", "(0)",
] + [chr(z + i) for z in DIGIT_ZEROS for i in (0, 5, 9)]


def random_inputs(rng, codes):
    kind = rng.randrange(7)
    if kind == 6:
        # Many leading zeros in the national number.
        cc = rng.choice(codes)
        tail = "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 4)))
        return rng.choice(["+", "", "00"]) + "%d%s%s" % (cc, "0" * rng.randint(1, 17), tail)
    if kind == 0:
        return "+" + "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 21)))
    if kind == 1:
        return "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 21)))
    if kind == 2:
        s = "".join(rng.choice("0123456789") for _ in range(rng.randint(3, 18)))
        return rng.choice(["+", "00", "", " +", "+ "]) + group(s, rng.choice(SEPARATORS), rng)
    if kind == 3:
        return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 30)))
    if kind == 4:
        return "".join(random_scalar(rng) if rng.random() < 0.3 else rng.choice(ALPHABET)
                       for _ in range(rng.randint(0, 25)))
    # Around the 250-character limit.
    core = "+%d%s" % (rng.choice([1, 44, 49, 7, 86]), "".join(rng.choice("0123456789") for _ in range(10)))
    pad = rng.choice([" ", "\u3000", "-", "\u00a0"])
    n = rng.randint(MAX_INPUT_CHARS - len(core) - 3, MAX_INPUT_CHARS - len(core) + 3)
    return rng.choice([core + pad * n, pad * n + core]) if pad != "-" else core[:3] + pad * n + core[3:]


def generate(count, seed):
    rng = random.Random(seed)
    inputs = []
    for cc, nsn, np, number in examples():
        inputs.extend(spellings(cc, nsn, np, number, rng))
        inputs.extend(mutations(cc, nsn, np, rng))
    codes = sorted(pn.COUNTRY_CODE_TO_REGION_CODE)
    while len(inputs) < count:
        inputs.append(random_inputs(rng, codes))
    return inputs


# ---------------------------------------------------------------------------
# Running the real normalizer
# ---------------------------------------------------------------------------


def run_normalizer(bin_path, inputs):
    payload = "".join(json.dumps(s) + "\n" for s in inputs).encode()
    if bin_path:
        cmd = [bin_path]
    else:
        cmd = ["cargo", "run", "-q", "-p", "leadstream-pipeline", "--example", "normalize_lines"]
    proc = subprocess.run(cmd, input=payload, stdout=subprocess.PIPE, cwd=ROOT, check=True)
    lines = proc.stdout.decode().splitlines()
    if len(lines) != len(inputs):
        sys.exit("normalizer answered %d lines for %d inputs" % (len(lines), len(inputs)))
    return [json.loads(line) for line in lines]


def load_exceptions(path):
    out = {}
    if not os.path.exists(path):
        return out
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.startswith("#"):
                continue
            raw, _, reason = line.partition("\t")
            try:
                out[json.loads(raw)] = reason
            except ValueError:
                sys.exit("%s:%d: not a JSON string: %s" % (path, n, raw))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", help="path of a built normalize_lines binary (default: cargo run)")
    ap.add_argument("--count", type=int, default=120_000, help="at least this many inputs (default 120000)")
    ap.add_argument("--seed", type=int, default=20260512)
    ap.add_argument("--exceptions", default=os.path.join(HERE, "exceptions.txt"))
    ap.add_argument("--show", type=int, default=20, help="disagreements to print")
    args = ap.parse_args()

    version = getattr(pn, "__version__", "?")
    if version != PINNED:
        sys.exit("phonenumbers %s installed, the oracle needs %s: pip install phonenumbers==%s" % (version, PINNED, PINNED))

    inputs = generate(max(args.count, 100_000), args.seed)
    want = [expected(s) for s in inputs]
    got = run_normalizer(args.bin, inputs)
    exceptions = load_exceptions(args.exceptions)

    failed, excused, shown = 0, 0, 0
    for raw, w, g in zip(inputs, want, got):
        if w == g:
            continue
        if raw in exceptions:
            excused += 1
            continue
        failed += 1
        if shown < args.show:
            shown += 1
            print("disagree: %s  phonenumbers=%s  leadstream=%s" % (json.dumps(raw), json.dumps(w), json.dumps(g)))
    accepted = sum(1 for w in want if w)
    print("%d inputs, %d accepted by phonenumbers %s, %d excused by %s" % (
        len(inputs), accepted, version, excused, os.path.basename(args.exceptions)))
    print("phone oracle: %d passed, %d failed" % (len(inputs) - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
