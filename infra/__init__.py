"""Herald's infrastructure: one CloudFormation template and the code that applies it locally."""
