"""Herald: serverless notifications and background jobs on AWS."""
