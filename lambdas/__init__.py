"""The Region workflow's Lambda functions: thin handlers (``lambdas.<step>.handler.handler``) over plain
functions (``lambdas.<step>.logic``) that tests call directly."""
