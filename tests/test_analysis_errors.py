"""Why a trial failed, in one line: read from the error text Ray writes (error.txt)."""
from __future__ import annotations

import json

from analysis.errors import MAX_CHARS, error_line, folder_trial_id, trial_errors

# As Ray 2.x writes error.txt: one block per failure, the traceback coloured; the trial was retried
# once (max_failures=1) and failed again with another error.
RAY_ERROR_TXT = """Failure # 1 (occurred at 2026-11-23_07-13-37)
\x1b[36mray::ImplicitFunc.train()\x1b[39m (pid=16750, ip=192.0.2.2, actor_id=aa38c6e0, repr=f)
  File "/venv/lib/python3.11/site-packages/ray/tune/trainable/trainable.py", line 329, in train
    raise skipped from exception_cause(skipped)
  File "/work/trainables/cifar.py", line 210, in train_trial
    loss = model(images)
ValueError: the first failure
Failure # 2 (occurred at 2026-11-23_07-14-02)
\x1b[36mray::ImplicitFunc.train()\x1b[39m (pid=16801, ip=192.0.2.2, actor_id=bb38c6e0, repr=f)
  File "/work/trainables/cifar.py", line 210, in train_trial
    loss = model(images)
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB
"""

ACTOR_DIED = """Failure # 1 (occurred at 2026-11-23_07-13-37)
The actor died unexpectedly before finishing this task.
\tclass_name: ImplicitFunc
\tactor_id: 0d1f
\tpid: 4242
\tip: 10.0.0.7
The actor is dead because its worker process has died. Worker exit type: NODE_DIED
"""


def test_the_last_failures_exception_is_the_line():
    assert error_line(RAY_ERROR_TXT) == "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"


def test_a_ray_message_that_is_no_exception_keeps_its_cause():
    assert error_line(ACTOR_DIED) == ("The actor died unexpectedly before finishing this task. The actor is dead "
                                      "because its worker process has died. Worker exit type: NODE_DIED")


def test_wrapped_and_bare_exceptions_and_odd_text():
    assert error_line("ray.exceptions.RayTaskError(ValueError): bad\n") == "ray.exceptions.RayTaskError(ValueError): bad"
    assert error_line("Traceback (most recent call last):\n  x\nKeyboardInterrupt\n") == "KeyboardInterrupt"
    assert error_line("") == "" and error_line("\n\n") == ""
    assert error_line("boom") == "boom"
    long = error_line("RuntimeError: " + "x" * 2000)
    assert len(long) == MAX_CHARS and long.endswith("...")


def test_trial_errors_of_a_folder_name_each_trial(tmp_path):
    with_result = tmp_path / "train_cifar_ab12c_00000"
    with_result.mkdir()
    (with_result / "result.json").write_text(json.dumps({"trial_id": "ab12c_00000", "epoch": 1}) + "\n")
    (with_result / "error.txt").write_text(RAY_ERROR_TXT)
    before_first_epoch = tmp_path / "train_cifar_ab12c_00001"  # Ray leaves result.json empty
    before_first_epoch.mkdir()
    (before_first_epoch / "result.json").write_text("")
    (before_first_epoch / "error.txt").write_text(ACTOR_DIED)
    ray_default = tmp_path / "f_64339_00002_2_x=1_2026-11-23_07-13-34"  # Ray's own folder names
    ray_default.mkdir()
    (ray_default / "error.txt").write_text("ValueError: x\n")
    (tmp_path / "train_cifar_ab12c_00003").mkdir()  # no error
    assert folder_trial_id(ray_default) == "64339_00002"
    errors = trial_errors(tmp_path)
    assert set(errors) == {"ab12c_00000", "ab12c_00001", "64339_00002"}
    assert errors["ab12c_00000"].startswith("torch.OutOfMemoryError")
    assert errors["ab12c_00001"].startswith("The actor died")
