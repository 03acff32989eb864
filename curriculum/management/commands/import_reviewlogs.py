"""`manage.py import_reviewlogs FILE --curriculum KEY`: import a review-log file (fsrs, anki or hlr CSV), all or nothing.

It imports in this process (not an HTTP request), through the same service as the admin's import job, which takes
no lock a live review post waits on (curriculum/reviews/importers/service.py)."""
from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from curriculum.admin_text import count_noun
from curriculum.reviews.importers.service import FORMATS, ImportFileError, import_review_file


class Command(BaseCommand):
    help = (
        "Import a review log (FSRS optimizer CSV, Anki revlog CSV or Duolingo half-life-regression CSV) into a "
        "curriculum. A bad row imports nothing; re-importing a file adds nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="the CSV file")
        parser.add_argument("--curriculum", required=True, help="curriculum key (created if missing)")
        parser.add_argument("--format", choices=sorted(FORMATS), help="the file's format (default: from the header)")
        parser.add_argument("--learner", help="the learner whose reviews the file holds (fsrs and anki files)")
        parser.add_argument("--dry-run", action="store_true", help="validate and count only; store nothing")
        parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")

    def handle(self, *args, file: str, curriculum: str, format: str | None, learner: str | None, progress: bool,
               dry_run: bool = False, **options):
        path = Path(file)
        if not path.is_file():
            raise CommandError(f"{file}: no such file")
        size = path.stat().st_size
        # two passes over the file (validating, then storing), one for a dry run
        bar = tqdm(total=size if dry_run else 2 * size, unit="B", unit_scale=True, desc=path.name,
                   disable=not progress, file=self.stderr._out)

        def show(phase: str, done: int, total: int | None) -> None:
            bar.set_postfix_str(phase, refresh=False)
            bar.update(done + (size if phase != "validating" else 0) - bar.n)

        try:
            result = import_review_file(
                path=path, curriculum_key=curriculum, format=format, learner=learner, dry_run=dry_run, on_progress=show,
            )
        except ImportFileError as exc:
            raise CommandError(f"{exc} (nothing was imported)") from exc
        finally:
            bar.close()
        if result.dry_run:
            self.stdout.write(self.style.SUCCESS(
                f"dry run, nothing stored: {path.name} ({result.format}) -> {result.curriculum}: {result.rows} rows, "
                f"{result.skipped} skipped; {count_noun(result.learners, 'learner')}, "
                f"would add {count_noun(result.concepts_created, 'new concept')}"
            ))
            self._notes(result)
            return
        self.stdout.write(self.style.SUCCESS(
            f"{path.name} ({result.format}) -> {result.curriculum}: {result.created} reviews created, "
            f"{result.duplicates} duplicates, {result.skipped} skipped of {result.rows} rows; "
            f"{count_noun(result.learners, 'learner')}, {count_noun(result.concepts_created, 'new concept')}; "
            f"batch {result.batch}"
        ))
        self._notes(result)

    def _notes(self, result) -> None:
        for note in result.notes:
            self.stdout.write(self.style.WARNING(note))
