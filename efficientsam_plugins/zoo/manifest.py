"""The checkpoints the zoo knows: built-in entries, a user's manifest, the mirror setting.

Each entry carries its architecture, so that callers derive a model config from a zoo name
(``get_entry('sam_vit_b').arch.config``) and find the weights of a config
(``entry_for('efficientsam', 'ti')``) instead of keeping name maps of their own. Built-in entries
are Python, not JSON, because setup.py ships no package data.
"""
import json
import os
import re
from dataclasses import dataclass, replace
from typing import List, Optional, Tuple

from .errors import ManifestError, UnknownCheckpointError

MANIFEST_ENV = 'EFFICIENTSAM_ZOO_MANIFEST'
MIRROR_ENV = 'EFFICIENTSAM_ZOO_MIRROR'
URL_SCHEMES = ('http://', 'https://', 'file://')


@dataclass(frozen=True)
class Arch:
    """What a checkpoint holds: ``family`` picks the builder, ``config`` (None: unknown) its
    configuration, as the official builders name them: efficientsam 'ti'/'s', sam 'vit_h'/'vit_l'/
    'vit_b', mobile_sam 'vit_t'."""
    family: str
    config: Optional[str] = None


@dataclass(frozen=True)
class Entry:
    """One checkpoint; a ``size`` or ``sha256`` of None is not checked, ``arch`` is None only for
    URLs outside the zoo."""
    name: str
    filename: str
    urls: Tuple[str, ...]
    size: Optional[int]
    sha256: Optional[str]
    arch: Optional[Arch]
    license: str = ''
    description: str = ''


_SAM_URL = 'https://dl.fbaipublicfiles.com/segment_anything/'
BUILTIN_ENTRIES = (
    Entry('efficientsam_ti', 'efficient_sam_vitt.pt',
          ('https://github.com/yformer/EfficientSAM/raw/main/weights/efficient_sam_vitt.pt',
           'https://huggingface.co/merve/EfficientSAM/resolve/main/efficient_sam_vitt.pt'),
          40982470, 'dff858b19600a46461cbb7de98f796b23a7a888d9f5e34c0b033f7d6eb9e4e6a',
          Arch('efficientsam', 'ti'), 'Apache-2.0',
          'EfficientSAM-Ti: ViT-Tiny image encoder, SAMI-pretrained, SA-1B fine-tuned'),
    Entry('efficientsam_s', 'efficient_sam_vits.pt',
          ('https://huggingface.co/yunyangx/EfficientSAM/resolve/main/efficient_sam_vits.pt',),
          105742022, '339376940b92351ae26dd1162e2305a1cc6f5cde735105e91286251abd9a6b65',
          Arch('efficientsam', 's'), 'Apache-2.0',
          'EfficientSAM-S: ViT-Small image encoder, SAMI-pretrained, SA-1B fine-tuned'),
    Entry('sam_vit_h', 'sam_vit_h_4b8939.pth', (_SAM_URL + 'sam_vit_h_4b8939.pth',),
          2564550879, 'a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e',
          Arch('sam', 'vit_h'), 'Apache-2.0', 'Segment Anything ViT-H (the SAMI teacher)'),
    Entry('sam_vit_l', 'sam_vit_l_0b3195.pth', (_SAM_URL + 'sam_vit_l_0b3195.pth',),
          1249524607, '3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622',
          Arch('sam', 'vit_l'), 'Apache-2.0', 'Segment Anything ViT-L'),
    Entry('sam_vit_b', 'sam_vit_b_01ec64.pth', (_SAM_URL + 'sam_vit_b_01ec64.pth',),
          375042383, 'ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912',
          Arch('sam', 'vit_b'), 'Apache-2.0', 'Segment Anything ViT-B'),
    Entry('mobile_sam', 'mobile_sam.pt',
          ('https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt',),
          40728226, '6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f',
          Arch('mobile_sam', 'vit_t'), 'Apache-2.0',
          'MobileSAM: TinyViT image encoder distilled from SAM ViT-H'),
)

FIELDS = ('name', 'filename', 'urls', 'size', 'sha256', 'arch', 'license', 'description')
_PLAIN = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.+-]*')  # so that no name escapes the cache directory


def list_entries() -> List[Entry]:
    """Every entry, built-in first; read afresh so that changes to the environment apply at once."""
    entries = {entry.name: entry for entry in BUILTIN_ENTRIES}
    if os.environ.get(MANIFEST_ENV):
        entries.update((entry.name, entry) for entry in _user_entries(os.environ[MANIFEST_ENV]))
    mirror = os.environ.get(MIRROR_ENV, '').strip().rstrip('/')
    if mirror:  # the same file names, all served from one directory
        if not mirror.startswith(URL_SCHEMES):
            raise ManifestError(f'{MIRROR_ENV}={mirror!r}: expected a base URL '
                                f'({", ".join(URL_SCHEMES)})')
        entries = {name: replace(entry, urls=tuple(dict.fromkeys(
            f'{mirror}/{url.rsplit("/", 1)[-1]}' for url in entry.urls)))
            for name, entry in entries.items()}
    return list(entries.values())


def get_entry(name: str) -> Entry:
    """The entry called ``name`` (or ``zoo://name``); the error lists the known names."""
    entries = {entry.name: entry for entry in list_entries()}
    name = name[len('zoo://'):] if name.startswith('zoo://') else name
    if name not in entries:
        raise UnknownCheckpointError(f'unknown checkpoint {name!r}; the zoo knows: '
                                     f'{", ".join(entries)} (add yours with {MANIFEST_ENV}=file.json)')
    return entries[name]


def entry_for(family: str, config: str) -> Entry:
    """The first entry (built-in ones come first) holding architecture ``family``/``config``."""
    for entry in list_entries():
        if entry.arch == Arch(family, config):
            return entry
    raise UnknownCheckpointError(f'the zoo has no {family} {config!r} checkpoint')


def _user_entries(path: str) -> List[Entry]:
    try:
        with open(path, encoding='utf-8') as stream:
            data = json.load(stream)
    except (OSError, ValueError) as err:  # ValueError: bad JSON or encoding
        raise ManifestError(f'{path} (set by {MANIFEST_ENV}): cannot read it: {err}') from None
    entries = data.get('entries') if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise ManifestError(f'{path}: expected a JSON list of entries or {{"entries": [...]}}')
    return [_parse(raw, f'{path}: entry #{index}') for index, raw in enumerate(entries)]


def _parse(raw, where: str) -> Entry:
    """An :class:`Entry` from a JSON record; the error names the file, the entry and the field."""
    if not isinstance(raw, dict):
        raise ManifestError(f'{where}: expected a JSON object, got {raw!r}')
    raw = dict(raw)

    def require(field, ok, expected):
        if not ok:
            got = repr(raw[field]) if field in raw else 'nothing'
            raise ManifestError(f'{where} ({raw.get("name")!r}): field {field!r}: expected '
                                f'{expected}, got {got}')

    for field in sorted(set(raw) - set(FIELDS)):
        require(field, False, f'one of the fields {", ".join(FIELDS)}')
    for field in ('name', 'filename'):
        require(field, isinstance(raw.get(field), str) and _PLAIN.fullmatch(raw[field]),
                'a plain name of letters, digits and "_.+-"')
    urls, size, sha256, arch = (raw.get(field) for field in ('urls', 'size', 'sha256', 'arch'))
    require('urls', isinstance(urls, list) and urls and all(
        isinstance(url, str) and url.startswith(URL_SCHEMES) for url in urls),
        f'a non-empty list of {", ".join(URL_SCHEMES)} URLs')
    require('size', size is None or (type(size) is int and size > 0), 'a positive number of bytes')
    require('sha256', sha256 is None or (isinstance(sha256, str) and re.fullmatch('[0-9a-fA-F]{64}', sha256)),
            '64 hex digits')
    require('arch', isinstance(arch, dict) and set(arch) <= {'family', 'config'}
            and isinstance(arch.get('family'), str) and arch['family']
            and isinstance(arch.get('config') or '', str),
            '{"family": "efficientsam", "config": "ti"} (a config may be left out)')
    return Entry(raw['name'], raw['filename'], tuple(urls), size, sha256 and sha256.lower(),
                 Arch(arch['family'], arch.get('config')), str(raw.get('license', '')),
                 str(raw.get('description', '')))
