"""``tools/zoo.py``: list, download, verify and locate checkpoints (run it via ``cli.run_tool``,
which turns a ZooError into one ``error: ...`` line)."""
import argparse
import sys
from typing import List, Optional

from .download import HOME_ENV, cache_dir, get_checkpoint, verify
from .manifest import get_entry, list_entries


def main(argv: Optional[List[str]] = None) -> int:
    """Run one command; 0 when everything is fine, 1 otherwise."""
    parser = argparse.ArgumentParser(prog='zoo.py', description='Download and verify EfficientSAM / '
                                     f'SAM checkpoints. Cache: ${HOME_ENV} (now {cache_dir()}).')
    commands = parser.add_subparsers(required=True, metavar='COMMAND')
    commands.add_parser('list', help='list the known checkpoints').set_defaults(command=_list)
    fetch = commands.add_parser('download', help='download checkpoints into the cache, verified')
    fetch.add_argument('names', nargs='+', metavar='NAME', help='zoo name or URL')
    fetch.add_argument('--offline', action='store_true', help='only check that they are cached')
    fetch.set_defaults(command=_download)
    check = commands.add_parser('verify', help='re-hash cached checkpoints: OK, MISSING or CORRUPT',
                                description='Without names, checks every entry and fails only on '
                                            'CORRUPT files; named entries must also be present.')
    check.add_argument('names', nargs='*', metavar='NAME')
    check.set_defaults(command=_verify)
    locate = commands.add_parser('path', help='print where a checkpoint is cached (exit 1 if not yet)')
    locate.add_argument('name', metavar='NAME')
    locate.set_defaults(command=_path)
    args = parser.parse_args(argv)
    return args.command(args)


def _list(args) -> int:
    rows = [('NAME', 'ARCH', 'SIZE', 'CACHED', 'LICENSE', 'DESCRIPTION')]
    for entry in list_entries():
        rows.append((entry.name, f'{entry.arch.family}/{entry.arch.config or "?"}',
                     f'{entry.size / 1e6:,.1f} MB' if entry.size else '?',
                     'yes' if (cache_dir() / entry.filename).is_file() else 'no',
                     entry.license or '?', entry.description))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    for row in rows:
        print('  '.join(cell.ljust(width) for cell, width in zip(row, widths)) + '  ' + row[-1])
    print(f'\ncache: {cache_dir()}')
    return 0


def _download(args) -> int:
    for name in args.names:
        print(get_checkpoint(name, offline=args.offline or None))
    return 0


def _verify(args) -> int:
    entries = [get_entry(name) for name in args.names] if args.names else list_entries()
    failed = False
    for entry in entries:
        result = verify(entry)
        failed |= result.status == 'CORRUPT' or (result.status == 'MISSING' and bool(args.names))
        print(f'{result.status:<8} {entry.name:<20} {result.path}  ({result.detail})')
    return 1 if failed else 0


def _path(args) -> int:
    path = cache_dir() / get_entry(args.name).filename
    print(path)
    if not path.is_file():
        print(f'{args.name} is not downloaded yet; run: python tools/zoo.py download {args.name}',
              file=sys.stderr)
        return 1
    return 0
