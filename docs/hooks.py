"""mkdocs hook: a line ``<!-- benchmark: NAME.json -->`` in a page becomes the tables of
``docs/benchmarks/NAME.json``, as written by a benchmark tool's ``--json`` option
(:func:`efficientsam_plugins.cli.write_benchmark_json`): the command, the machine, the notes and
one table per run of rows sharing the same columns. So every figure on the page comes from a file a
run wrote, never from hand-typed text."""
import json
import re
from pathlib import Path

from mkdocs.exceptions import PluginError

MARKER = re.compile(r'^<!-- benchmark: ([\w.-]+\.json) -->$', re.MULTILINE)
BENCHMARKS = Path(__file__).parent / 'benchmarks'


def _flatten(row: dict, prefix: str = '') -> dict:
    flat = {}
    for key, value in row.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f'{prefix}{key} '))
        else:
            flat[f'{prefix}{key}'] = value
    return flat


def _cell(value) -> str:
    if value is None:
        return '-'
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    if isinstance(value, int):
        return f'{value:,}'
    if isinstance(value, float):
        return f'{value:,.0f}' if abs(value) >= 100 else f'{value:.3g}'
    if isinstance(value, list):
        return ' / '.join(map(_cell, value))
    return str(value).replace('|', '\\|')


def _tables(rows: list) -> str:
    """Consecutive rows with the same columns form one table."""
    out, columns = [], None
    for row in map(_flatten, rows):
        if list(row) != columns:
            columns = list(row)
            out.append('\n| ' + ' | '.join(c.replace('_', ' ') for c in columns) + ' |\n|'
                       + '---|' * len(columns))
        out.append('| ' + ' | '.join(_cell(row[c]) for c in columns) + ' |')
    return '\n'.join(out)


def render(name: str) -> str:
    """The markdown of one result file (a missing or malformed file fails the build)."""
    path = BENCHMARKS / name
    if not path.is_file():
        raise PluginError(f'benchmark results {path} not found: run the tool with --json {path}')
    data = json.loads(path.read_text(encoding='utf-8'))
    machine = data['conditions']
    load = ' / '.join(f'{value:.2f}' for value in machine['load_average'])
    conditions = (f'{machine["cpu"]} (capability {machine["cpu_capability"]}, {machine["cpu_count"]} cores), '
                  f'{machine["threads"]} torch threads, GPU: {machine["gpu"] or "none"}, torch {machine["torch"]}, '
                  f'Python {machine["python"]}, load average {load} (1 / 5 / 15 min) when the results were written')
    return '\n'.join([f'`{data["command"]}`', '',
                      f'- **measured**: {data["date"]}', f'- **machine**: {conditions}',
                      f'- **notes**: {data["notes"]}' if data.get('notes') else '',
                      f'- **data**: [`benchmarks/{name}`](benchmarks/{name})', _tables(data['rows']), ''])


def on_page_markdown(markdown, page, config, files):
    return MARKER.sub(lambda match: render(match.group(1)), markdown)
