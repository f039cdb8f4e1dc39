"""``tools/zoo.py``: list, download, verify and locate checkpoints (run it via ``cli.run_tool``,
which turns a ZooError into one ``error: ...`` line)."""
import argparse
import sys
from typing import List, Optional

from .download import DEFAULT_TIMEOUT, HOME_ENV, TIMEOUT_ENV, cache_dir, get_checkpoint, verify
from .manifest import get_entry, list_entries


def main(argv: Optional[List[str]] = None) -> int:
    """Run one command; 0 when everything is fine, 1 otherwise."""
    parser = argparse.ArgumentParser(prog='zoo.py', description='Download and verify EfficientSAM / '
                                     f'SAM checkpoints. Cache: ${HOME_ENV} (now {cache_dir()}).')
    commands = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')
    commands.add_parser('list', help='list the known checkpoints')
    fetch = commands.add_parser('download', help='download checkpoints into the cache, verified')
    fetch.add_argument('names', nargs='+', metavar='NAME', help='zoo name or URL')
    fetch.add_argument('--offline', action='store_true', help='only check that they are cached')
    fetch.add_argument('--timeout', type=float, metavar='SECONDS',
                       help=f'give a URL up after this long without data (default: ${TIMEOUT_ENV}, '
                       f'else {DEFAULT_TIMEOUT:g})')
    commands.add_parser('verify', help='re-hash cached checkpoints: OK, MISSING or CORRUPT',
                        description='Without names, checks every entry and fails only on CORRUPT '
                                    'files; named entries must also be present.'
                        ).add_argument('names', nargs='*', metavar='NAME')
    commands.add_parser('path', help='print where a checkpoint is cached (exit 1 if not yet)'
                        ).add_argument('name', metavar='NAME')
    args = parser.parse_args(argv)

    if args.command == 'list':
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
    elif args.command == 'download':
        for name in args.names:
            print(get_checkpoint(name, offline=args.offline or None, timeout=args.timeout))
    elif args.command == 'verify':
        failed = False
        for entry in [get_entry(name) for name in args.names] if args.names else list_entries():
            result = verify(entry)
            failed |= result.status == 'CORRUPT' or (result.status == 'MISSING' and bool(args.names))
            print(f'{result.status:<8} {entry.name:<20} {result.path}  ({result.detail})')
        return int(failed)
    else:
        path = cache_dir() / get_entry(args.name).filename
        print(path)
        if not path.is_file():
            print(f'{args.name} is not downloaded yet; run: python tools/zoo.py download {args.name}',
                  file=sys.stderr)
            return 1
    return 0
