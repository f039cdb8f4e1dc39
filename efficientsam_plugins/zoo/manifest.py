"""Named checkpoints the zoo knows: the built-in entries plus a user's own manifest.

The built-in entries live here, in Python, rather than in a JSON data file because setup.py ships
no package data: a JSON file would be missing from non-editable installs. A user manifest
(``EFFICIENTSAM_ZOO_MANIFEST=/path/user.json``) is JSON with the same eight fields, either a list
of entries or ``{"entries": [...]}``; its entries are added to the built-in ones and replace a
built-in entry of the same name (to pin it to an in-house copy, say).

``EFFICIENTSAM_ZOO_MIRROR=https://host/dir`` replaces everything up to the last ``/`` of every
URL, so users behind a firewall can serve all files from one directory of their own.
"""
import json
import os
import re
from dataclasses import dataclass, replace
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .errors import ManifestError, UnknownCheckpointError

MANIFEST_ENV = 'EFFICIENTSAM_ZOO_MANIFEST'
MIRROR_ENV = 'EFFICIENTSAM_ZOO_MIRROR'

URL_SCHEMES = ('http://', 'https://', 'file://')

_SAM_BASE_URL = 'https://dl.fbaipublicfiles.com/segment_anything/'

BUILTIN_ENTRIES: Tuple[Dict[str, Any], ...] = (
    dict(name='efficientsam_ti', filename='efficient_sam_vitt.pt',
         urls=['https://github.com/yformer/EfficientSAM/raw/main/weights/efficient_sam_vitt.pt',
               'https://huggingface.co/merve/EfficientSAM/resolve/main/efficient_sam_vitt.pt'],
         size=40982470,
         sha256='dff858b19600a46461cbb7de98f796b23a7a888d9f5e34c0b033f7d6eb9e4e6a',
         license='Apache-2.0', format='efficientsam',
         description='EfficientSAM-Ti: ViT-Tiny image encoder, SAMI-pretrained, SA-1B fine-tuned'),
    dict(name='efficientsam_s', filename='efficient_sam_vits.pt',
         urls=['https://huggingface.co/yunyangx/EfficientSAM/resolve/main/efficient_sam_vits.pt'],
         size=105742022,
         sha256='339376940b92351ae26dd1162e2305a1cc6f5cde735105e91286251abd9a6b65',
         license='Apache-2.0', format='efficientsam',
         description='EfficientSAM-S: ViT-Small image encoder, SAMI-pretrained, SA-1B fine-tuned'),
    dict(name='sam_vit_h', filename='sam_vit_h_4b8939.pth',
         urls=[_SAM_BASE_URL + 'sam_vit_h_4b8939.pth'],
         size=2564550879,
         sha256='a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e',
         license='Apache-2.0', format='sam',
         description='Segment Anything ViT-H (the SAMI teacher)'),
    dict(name='sam_vit_l', filename='sam_vit_l_0b3195.pth',
         urls=[_SAM_BASE_URL + 'sam_vit_l_0b3195.pth'],
         size=1249524607,
         sha256='3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622',
         license='Apache-2.0', format='sam',
         description='Segment Anything ViT-L'),
    dict(name='sam_vit_b', filename='sam_vit_b_01ec64.pth',
         urls=[_SAM_BASE_URL + 'sam_vit_b_01ec64.pth'],
         size=375042383,
         sha256='ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912',
         license='Apache-2.0', format='sam',
         description='Segment Anything ViT-B'),
    dict(name='mobile_sam', filename='mobile_sam.pt',
         urls=['https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt'],
         size=40728226,
         sha256='6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f',
         license='Apache-2.0', format='mobile_sam',
         description='MobileSAM: TinyViT image encoder distilled from SAM ViT-H'),
)

FIELDS = ('name', 'filename', 'urls', 'size', 'sha256', 'license', 'format', 'description')

# Names and file names stay plain so that they can never escape the cache directory.
_PLAIN_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.+-]*$')
_SHA256 = re.compile(r'^[0-9a-fA-F]{64}$')
# The downloader keeps these next to a checkpoint; an entry must not be able to name them.
RESERVED_SUFFIXES = ('.part', '.lock')


@dataclass(frozen=True)
class Entry:
    """One downloadable checkpoint; ``size`` and ``sha256`` are None when unknown (not checked)."""
    name: str
    filename: str
    urls: Tuple[str, ...]
    size: Optional[int]
    sha256: Optional[str]
    license: str
    format: str
    description: str


def list_entries() -> List[Entry]:
    """Every entry, built-in first, with the user manifest and the mirror setting applied.

    Read afresh on each call, so changes to the environment take effect at once.
    """
    entries = {}
    for index, raw in enumerate(BUILTIN_ENTRIES):
        entry = entry_from_dict(raw, 'built-in manifest', index)
        entries[entry.name] = entry
    user_manifest = os.environ.get(MANIFEST_ENV)
    if user_manifest:
        for entry in load_manifest_file(user_manifest):
            entries[entry.name] = entry
    mirror = _mirror_base()
    if mirror:
        entries = {name: replace(entry, urls=mirrored_urls(entry.urls, mirror))
                   for name, entry in entries.items()}
    return list(entries.values())


def get_entry(name: str) -> Entry:
    """The entry called ``name``; the error lists the known names."""
    for entry in list_entries():
        if entry.name == name:
            return entry
    known = ', '.join(entry.name for entry in list_entries())
    raise UnknownCheckpointError(f'unknown checkpoint {name!r}; the zoo knows: {known} '
                                 f'(add your own with {MANIFEST_ENV}=/path/manifest.json)')


def load_manifest_file(path: str) -> List[Entry]:
    """Entries of a user manifest file, validated; errors name the file, the entry and the field."""
    try:
        with open(path, encoding='utf-8') as stream:
            data = json.load(stream)
    except FileNotFoundError:
        raise ManifestError(f'{path}: manifest file not found (set by {MANIFEST_ENV})') from None
    except json.JSONDecodeError as err:
        raise ManifestError(f'{path}: not valid JSON: {err}') from None
    except (OSError, UnicodeDecodeError) as err:
        raise ManifestError(f'{path}: cannot read manifest: {err}') from None
    if isinstance(data, Mapping) and set(data) <= {'version', 'entries'}:
        data = data.get('entries')
    if not isinstance(data, list):
        raise ManifestError(f'{path}: expected a JSON list of entries or an object '
                            f'{{"entries": [...]}}, got {type(data).__name__}')
    entries = [entry_from_dict(raw, path, index) for index, raw in enumerate(data)]
    seen = set()
    for entry in entries:
        if entry.name in seen:
            raise ManifestError(f'{path}: entry name {entry.name!r} appears more than once')
        seen.add(entry.name)
    return entries


def entry_from_dict(raw: Any, source: str, index: int) -> Entry:
    """An :class:`Entry` from one manifest record, or a ManifestError naming source and field."""
    if not isinstance(raw, Mapping):
        raise ManifestError(f'{source}: entry #{index} must be a JSON object, '
                            f'got {type(raw).__name__}')
    label = f'entry #{index}' + (f' ({raw["name"]!r})' if isinstance(raw.get('name'), str) else '')

    def bad(field, problem):
        return ManifestError(f'{source}: {label}: field {field!r}: {problem}')

    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        raise bad(unknown[0], f'unknown field (the fields are: {", ".join(FIELDS)})')
    for field in FIELDS:
        if field not in raw:
            raise bad(field, 'missing (size and sha256 may be null, but must be present)')

    for field in ('name', 'filename'):
        value = raw[field]
        if not isinstance(value, str) or not _PLAIN_NAME.match(value):
            raise bad(field, f'expected a plain name of letters, digits and "_.+-" '
                             f'(no slashes, not starting with a dot), got {value!r}')
    if raw['filename'].endswith(RESERVED_SUFFIXES):
        raise bad('filename', f'must not end with {" or ".join(RESERVED_SUFFIXES)}')

    urls = raw['urls']
    if not isinstance(urls, list) or not urls:
        raise bad('urls', f'expected a non-empty list of URLs, got {urls!r}')
    for url in urls:
        if not isinstance(url, str) or not url.startswith(URL_SCHEMES) or url.endswith('/'):
            raise bad('urls', f'expected {", ".join(URL_SCHEMES)} URLs of a file, got {url!r}')

    size = raw['size']
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size <= 0):
        raise bad('size', f'expected a positive number of bytes or null, got {size!r}')

    sha256 = raw['sha256']
    if sha256 is not None and (not isinstance(sha256, str) or not _SHA256.match(sha256)):
        raise bad('sha256', f'expected 64 hex digits or null, got {sha256!r}')

    for field in ('license', 'format', 'description'):
        if not isinstance(raw[field], str):
            raise bad(field, f'expected a string, got {raw[field]!r}')
    if not raw['format']:
        raise bad('format', 'must not be empty (e.g. "efficientsam", "sam", "mobile_sam")')

    return Entry(name=raw['name'], filename=raw['filename'], urls=tuple(urls), size=size,
                 sha256=sha256.lower() if sha256 else None, license=raw['license'],
                 format=raw['format'], description=raw['description'])


def mirrored_urls(urls: Tuple[str, ...], mirror: str) -> Tuple[str, ...]:
    """``urls`` with everything up to the last '/' replaced by ``mirror`` (duplicates dropped)."""
    rewritten = []
    for url in urls:
        candidate = mirror.rstrip('/') + '/' + url.rsplit('/', 1)[-1]
        if candidate not in rewritten:
            rewritten.append(candidate)
    return tuple(rewritten)


def _mirror_base() -> Optional[str]:
    mirror = os.environ.get(MIRROR_ENV, '').strip()
    if mirror and not mirror.startswith(URL_SCHEMES):
        raise ManifestError(f'{MIRROR_ENV}={mirror!r}: expected a base URL starting with '
                            f'{", ".join(URL_SCHEMES)}')
    return mirror or None
