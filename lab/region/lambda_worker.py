"""A Lambda sandbox's runtime loop, run by lab/region/lambda_sandbox.py in a clean interpreter
(``python -I -S -B lambda_worker.py``): standard library only, nothing of the lab or the repository.

Argument: JSON ``{"path": [code, layer/python..., runtime boto3], "handler": "module.attribute"}``. The
import path is the runtime's order in front of the standard library. Invocations arrive as JSON lines on
stdin (``{"event", "context"}``) and each answer is one JSON line on the descriptor that was stdout at start:
``{"ok": true, "result"}`` or ``{"ok": false, "errorType", "errorMessage"}``. The handler's own stdout and
stderr (logging, print) go to the sandbox's stderr, the lab's stand-in for the function's log group.

As in Lambda, the handler module is imported once at start (init); a module that cannot be imported makes
every invocation fail with ``Runtime.ImportModuleError``, the error the runtime reports.
"""

import importlib
import json
import os
import sys
import time
import traceback


class Context:
    def __init__(self, fields, deadline):
        self.function_name = fields["function_name"]
        self.function_version = fields.get("function_version", "$LATEST")
        self.invoked_function_arn = fields["invoked_function_arn"]
        self.memory_limit_in_mb = int(fields["memory_limit_in_mb"])
        self.aws_request_id = fields["aws_request_id"]
        self.log_group_name = fields.get("log_group_name", "")
        self.log_stream_name = fields.get("log_stream_name", "")
        self._deadline = deadline

    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def load(handler):
    module_name, _, attribute = handler.rpartition(".")
    if not module_name:
        raise ValueError(f"Bad handler '{handler}': not enough values to unpack (expected 2, got 1)")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        return None, ("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}")
    function = getattr(module, attribute, None)
    if not callable(function):
        return None, ("Runtime.HandlerNotFound", f"Handler '{attribute}' missing on module '{module_name}'")
    return function, None


def main():
    request = json.loads(sys.argv[1])
    sys.path[:0] = request["path"]
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    function, init_error = load(request["handler"])
    for line in sys.stdin:
        invocation = json.loads(line)
        if init_error is not None:
            answer = {"ok": False, "errorType": init_error[0], "errorMessage": init_error[1]}
        else:
            fields = invocation["context"]
            context = Context(fields, time.monotonic() + float(fields["timeout_seconds"]))
            try:
                result = function(invocation["event"], context)
                answer = {"ok": True, "result": json.loads(json.dumps(result, default=str))}
            except Exception as exc:
                traceback.print_exc()
                answer = {"ok": False, "errorType": type(exc).__name__, "errorMessage": str(exc)}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


if __name__ == "__main__":
    main()
