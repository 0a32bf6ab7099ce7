"""The emulation of any SAM template on this machine (``cloud.LocalCloud``): the
template reader, the stack and its AWS stand-ins (moto), the functions in worker
processes, their event sources, the REST APIs and the custom resources. Nothing here
knows about Baton: what a template needs beyond AWS comes from plug-in profiles
(``profiles``).

Empty on purpose: the Lambda workers import ``lambdas`` through this package, and it
keeps their cold starts free of boto3 and moto."""
