"""RabbitMQ for the integration lane."""
