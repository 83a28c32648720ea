"""Tests of README.md against the code: the two commands first, the flags table, the names it lists."""

import ast
import re

import faults
from conftest import KERNELS
from src import config, flags, models, paths

README = (paths.REPO_ROOT / "README.md").read_text(encoding="utf-8")
# What the tests try, counted in tests/README.md (README.md links to it).
TESTS_README = (paths.REPO_ROOT / "tests" / "README.md").read_text(encoding="utf-8")


def table_after(heading: str, document: str = README) -> list[list[str]]:
    """Returns the rows (cells, unescaped) of the first table after `heading` in `document`, header row excluded."""
    section = document[document.index(heading):]
    rows = []
    for line in section.splitlines()[1:]:
        if line.startswith("|"):
            cells = [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            rows.append(cells)
        elif rows:
            break
    return [row for row in rows[1:] if not set(row[0]) <= {"-", " "}]


def test_readme_shows_the_two_commands_first_and_ci_runs_the_test_one():
    first_block = README.split("```")[1]
    assert README.index("```") < README.index("\n## ")
    assert "make train" in first_block and "make test" in first_block
    ci = (paths.REPO_ROOT / ".ci" / "run").read_text()
    assert [line for line in ci.splitlines() if line and not line.startswith(("#", "set ", "cd "))] == ["make test"]


def test_flags_table_lists_exactly_the_kernels_flags():
    parser = flags.kernel_parser("mnist-cnn")
    documented = [row[0].strip("`") for row in table_after("## Flags")]
    expected = []
    for action in parser._actions:
        if "--help" in action.option_strings:
            continue
        flag = max(action.option_strings, key=len)
        expected.append(flag if action.nargs == 0 else f"{flag} {action.metavar}")
    expected.append("--budget NAME")  # the recipe kernels' own flag
    assert sorted(documented) == sorted(expected)


def test_flags_table_names_the_choices_the_code_accepts():
    meanings = {row[0].split()[0].strip("`"): row[1] for row in table_after("## Flags")}
    for flag, names in (("--model", models.MODEL_NAMES), ("--optimizer", config.OPTIMIZER_NAMES),
                        ("--schedule", config.SCHEDULE_NAMES), ("--precision", config.PRECISION_NAMES),
                        ("--strategy", config.STRATEGY_NAMES)):
        assert re.findall(r"`([a-z_0-9]+)`", meanings[flag]) == list(names), flag


def test_readme_tables_list_every_kernel_and_strategy():
    kernels = [row[0].strip("`") for row in table_after("## The kernels")]
    assert kernels == ["mnist-cnn", "mnist-fast", "mnist-ensemble", "mnist-mlp"] and sorted(kernels) == sorted(KERNELS)
    strategies = [row[0].split()[0].strip("`") for row in table_after("## Scaling out")]
    assert strategies == list(config.STRATEGY_NAMES)


def test_readme_is_a_user_guide_of_about_250_lines():
    assert len(README.splitlines()) <= 280


def test_every_figure_of_the_results_section_is_in_the_results_file_it_names():
    # Each bullet names its committed results file, and each decimal figure in it appears in that file (anywhere in
    # it: a figure copied from the wrong row of the right file still passes).
    section = README[README.index("## Results\n"):README.index("\n## ", README.index("## Results\n") + 1)]
    bullets = [item.split("\n\n")[0] for item in section.split("\n- ")[1:]]
    assert len(bullets) >= 3
    for bullet in bullets:
        named = re.findall(r"\]\((benchmarks/[\w./-]+\.md)\)", bullet)
        assert named, f"a figure without its results file: {bullet[:80]!r}"
        sources = "\n".join((paths.REPO_ROOT / name).read_text(encoding="utf-8") for name in named)
        text = re.sub(r"\]\([^)]*\)", "]", bullet)
        percentages = set(re.findall(r"(\d+\.\d+)(?=(?:-\d+\.\d+)?%)", text))  # 99.60%, and 99.24 of 99.24-99.28%
        for figure in re.findall(r"\d+\.\d+", text):
            # A results file may write a percentage as a fraction: 99.24% as 0.9924.
            forms = {figure} | ({f"{float(figure) / 100:.4f}"} if figure in percentages else set())
            assert any(form in sources for form in forms), f"{figure} is not in {', '.join(named)}"


def _test_cases(module: str, contains: str) -> list[tuple[int, str]]:
    """Returns `(cases, source)` of each test function in `tests/<module>.py` whose source holds `contains`; `cases`
    counts its parametrized cases (1 when it has none)."""
    source = (paths.REPO_ROOT / "tests" / f"{module}.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    assigned = {target.id: node.value for node in tree.body if isinstance(node, ast.Assign)
                for target in node.targets if isinstance(target, ast.Name)}
    found = []
    for node in tree.body:
        text = ast.get_source_segment(source, node)
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_") and contains in text:
            cases = 1
            for decorator in node.decorator_list:
                if isinstance(decorator, ast.Call) and getattr(decorator.func, "attr", None) == "parametrize":
                    values = decorator.args[1]
                    values = assigned.get(values.id, values) if isinstance(values, ast.Name) else values
                    cases *= len(values.keys if isinstance(values, ast.Dict) else values.elts)
            found.append((cases, text))
    return found


def test_what_the_tests_try_is_counted_from_the_tests():
    killed = _test_cases("test_kernels_resume", ".kill_when(")
    kernel_kills = sum(cases * text.count(".kill_when(") for cases, text in killed)
    sigterms = sum(cases for module in ("test_console", "test_kaggle_bundle", "test_kernels_resume")
                   for cases, _ in _test_cases(module, "signal.SIGTERM"))
    mid_run = sum(text.count("_failing_at(") for _, text in _test_cases("test_kernels_resume", "_failing_at("))
    expected = {
        "`kill -9` before each system call of a save": sum(len(points) for points in faults.SAVE_KILL_POINTS.values()),
        "`kill -9` of a training kernel": kernel_kills,
        "SIGTERM": sigterms,
        "at each step of a write": len(faults.WRITE_FAULTS),
        "in the middle of a kernel's run": mid_run,
    }
    rows = table_after("## Kills and faults", TESTS_README)
    counted = {}
    for what, count in expected.items():
        [row] = [row for row in rows if what in row[0]]
        counted[what] = int(row[1])
    assert counted == expected
    assert (kernel_kills, sigterms, mid_run) == (4, 5, 2)  # the counting itself finds what it looks for
    assert f"({len(faults.WRITE_STEPS) + sum(len(modes) == 2 for modes in faults.WRITE_STEPS.values())}," in \
        [row for row in rows if "at each step of a write" in row[0]][0][0]


def cases(item) -> int:
    """Returns how many cases a test tries: a property's default examples plus its explicit ones, the product of
    its parametrized values, or a list's (or dict's) entries."""
    import test_loaders_fuzz  # here, not at the top: only this test reads the other test modules

    if isinstance(item, (list, dict)):
        return len(item)
    if getattr(item, "is_hypothesis_test", False):
        return test_loaders_fuzz.DEFAULT_EXAMPLES + len(getattr(item, "hypothesis_explicit_examples", []))
    count = 1
    for mark in getattr(item, "pytestmark", []):
        if mark.name == "parametrize":
            count *= len(mark.args[1])
    return count


def test_the_bad_inputs_the_tests_try_are_counted_from_the_tests():
    # here, not at the top: the test modules whose cases the README counts
    import test_collect as collect
    import test_kaggle_bundle as bundle
    import test_kaggle_competition as competition
    import test_kaggle_kernels as kernels
    import test_loaders as loaders
    import test_loaders_fuzz as fuzz
    import test_npz as npz
    import test_records as records
    import test_report as report
    import test_results as results
    import test_runs_table as runs_table
    import test_submission as submission

    counted = {
        "bad input: lying `.npy` headers (negative, huge or wrapping shapes, dtypes, fortran order, versions, "
        "syntax)": [
            fuzz.test_load_npz_refuses_each_lying_header_for_its_own_reason,
            npz.test_read_npz_refuses_a_negative_dimension_before_reading_the_member,
            npz.test_read_npz_computes_sizes_with_python_integers,
            npz.test_read_npz_refuses_a_header_that_claims_terabytes_in_one_line,
            npz.test_read_npz_refuses_a_header_that_claims_more_than_the_entry_holds,
            npz.test_read_npz_never_unpickles_and_names_what_is_missing,
            records.test_blend_of_a_run_whose_probabilities_claim_terabytes_is_one_line,
            results.test_load_fold_of_a_header_that_claims_terabytes_is_one_line],
        "bad input: damaged zip fields of an `.npz` (15 fields), truncations, bit flips": [
            fuzz.test_load_npz_refuses_each_damaged_zip_field_for_its_own_reason,
            fuzz.test_load_npz_refuses_a_truncated_file, fuzz.test_load_npz_survives_bit_flips,
            npz.test_read_npz_caps_a_zip_entry_s_uncompressed_size],
        "bad input: CSVs with edited bytes, a field too many, a wrong header or value": [
            fuzz.test_load_competition_survives_edits, loaders.test_load_competition_rejects_bad_train_csv,
            loaders.test_load_competition_refuses_a_row_with_one_more_field_naming_it,
            loaders.test_load_competition_rejects_bad_values, loaders.test_load_competition_rejects_missing_value],
        "bad input: run records nested deep, wrongly typed, naming files elsewhere, holding control characters": [
            records.DAMAGED, records.test_read_run_of_a_damaged_record_is_one_line,
            report.test_report_of_a_damaged_record_is_one_line,
            runs_table.test_runs_table_prints_no_control_characters_a_record_holds],
        "bad input: saved folds and fold kernels' records and folds (`make collect`)": [
            results.test_load_fold_refuses_a_damaged_fold_in_one_line, collect.RECORD_CHANGES,
            collect.INDEX_CHANGES],
        "bad input: Kaggle's competition zip (entries, size, missing files), a full disk, a non-empty target": [
            competition.test_download_competition_refuses_a_zip_that_is_not_the_competition_s,
            competition.test_download_competition_checks_the_declared_sizes_before_writing,
            competition.test_download_competition_write_failures_are_one_line],
        "bad input: submissions logs unreadable, damaged, read-only, failing after Kaggle accepted, written at once": [
            submission.test_check_submissions_log_refuses_a_log_it_could_not_add_to,
            submission.test_read_submissions_log_keeps_the_scored_entry_of_each_file,
            submission.test_check_submissions_log_refuses_a_folder_that_takes_no_file,
            competition.test_submit_checks_the_log_before_submitting,
            competition.test_submit_whose_log_fails_after_kaggle_accepted_warns_that_it_was_accepted,
            submission.test_append_submissions_log_loses_no_line_when_submits_run_at_once,
            submission.test_append_submissions_log_waits_for_a_submit_that_holds_the_log],
        "hostile names: kernel outputs (`..`, `/`, links, pipes, control characters, an old kaggle CLI)": [
            kernels.test_output_refuses_a_file_named_outside_the_folder_and_keeps_nothing, kernels.CLI_LEFTOVERS,
            kernels.test_output_refuses_a_kaggle_cli_that_writes_outside_its_folder],
        "hostile names: competition zip entries (`..`, `/`, sub-folders, other files)": [competition.FOREIGN_ENTRIES],
        "hostile names: Kaggle keys planted in `src/` (untracked, ignored, tracked) or in the kernel": [
            bundle.test_bundle_refuses_a_key_in_any_src_file_outside_a_git_checkout,
            bundle.test_bundle_refuses_an_untracked_or_ignored_src_file_naming_it,
            bundle.test_bundle_of_a_checkout_carries_the_tracked_files_and_checks_their_bytes,
            bundle.test_bundle_refuses_a_kernel_that_holds_the_key],
    }
    documented = {row[0]: row[1] for row in table_after("## Bad input and hostile names", TESTS_README)}
    # Rows this test does not know (other kinds of trials) are counted where they are added.
    assert {label: documented.get(label) for label in counted} == \
        {label: str(sum(cases(item) for item in items)) for label, items in counted.items()}
