"""Training assets, one partition per plot type: training_set -> model -> thresholds -> training_report.

Thin wrappers over the training steps in `hydra_assets.ml` (training_set, model_step, thresholds_step, training_report); each step is an MLflow run tagged with the Dagster run id
and the plot type, and hands over to the next through the Hydra database.
"""

import dagster as dg

from hydra_assets.partitions import plot_type as plot_type_partitions
from hydra_assets.resources.hydra import HydraResource
from hydra_assets.resources.mlflow import MlflowResource

BAD_RECALL_FLOOR = 0.95  # what the acceptance asks of every plot type on held-out data


class TrainingSetConfig(dg.Config):
    """How to sample the plot type's labeled images."""

    sampling: str = "balanced"  # balanced (every label down to the Bad count) | all
    validation_fraction: float = 0.2
    min_per_label: int = 10
    max_per_label: int = 0  # 0: no cap
    seed: int = 12345


class ModelConfig(dg.Config):
    """Overrides of the plot type's topology and input size, and of the topology's training defaults."""

    topology: str = ""  # "": the plot type's (compact | vgg16 | inceptionv3 | module:function)
    epochs: int = 0  # 0: the topology's default
    batch_size: int = 0
    learning_rate: float = 0.0
    input_size: list[int] = []  # [height, width]; empty: the plot type's (pydantic copies the default)
    weights_path: str = ""  # local weights file for transfer learning
    seed: int = 12345
    augment: bool = False  # light shifts, stretches and brightness changes while training (measured: no help)
    created_by: str = ""


class ThresholdsConfig(dg.Config):
    """Whether the new version becomes active: never | if_better (than the active one) | always."""

    activate: str = "never"
    user: str = "cli"  # who activates (needs activate_models); `cli` is the trusted command-line user
    precision_target: float = 0.0  # 0: the plot type's precision target


def _tracking(hydra: HydraResource, mlflow: MlflowResource):
    return mlflow.service_for(hydra.settings)


@dg.asset(
    partitions_def=plot_type_partitions,
    group_name="training",
    kinds={"python", "mlflow"},
)
def training_set(
    context: dg.AssetExecutionContext, config: TrainingSetConfig, hydra: HydraResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    """Sample the plot type's human-labeled images and split them, stratified, into train and validation."""
    from hydra_assets.ml.training_set import TrainingSetOptions, create_training_set

    options = TrainingSetOptions(sampling=config.sampling, validation_fraction=config.validation_fraction,
                                 min_per_label=config.min_per_label, max_per_label=config.max_per_label or None,
                                 seed=config.seed)
    result = create_training_set(hydra.db, hydra.settings, _tracking(hydra, mlflow), context.partition_key, options,
                                 dagster_run_id=context.run_id)
    return dg.MaterializeResult(metadata={
        "training_set_id": dg.MetadataValue.int(result.training_set_id),
        "sampling": result.sampling,
        "n_train": dg.MetadataValue.int(result.n_train),
        "n_validation": dg.MetadataValue.int(result.n_validation),
        "labels": dg.MetadataValue.json(result.label_names),
        "label_counts": dg.MetadataValue.json(result.label_counts),
        "excluded_labels": dg.MetadataValue.json(result.excluded),
        "mlflow_run_id": result.mlflow_run_id,
    })


@dg.asset(
    partitions_def=plot_type_partitions,
    group_name="training",
    kinds={"tensorflow", "mlflow"},
    deps=[training_set],
)
def model(
    context: dg.AssetExecutionContext, config: ModelConfig, hydra: HydraResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    """Train the plot type's topology on its latest training set; register the version in MLflow."""
    from hydra_assets.ml.model_step import TrainOptions, train_model_step

    if config.input_size and len(config.input_size) != 2:
        raise ValueError(f"input_size is [height, width], not {config.input_size}")
    options = TrainOptions(
        topology=config.topology or None, epochs=config.epochs or None, batch_size=config.batch_size or None,
        learning_rate=config.learning_rate or None,
        input_size=tuple(config.input_size) if config.input_size else None,  # type: ignore[arg-type]
        weights_path=config.weights_path or None, seed=config.seed, augment=config.augment,
    )
    result = train_model_step(hydra.db, hydra.settings, _tracking(hydra, mlflow), context.partition_key, options,
                              dagster_run_id=context.run_id, created_by=config.created_by, logger=context.log)
    return dg.MaterializeResult(metadata={
        "model": f"{result.name}/{result.version}",
        "model_id": dg.MetadataValue.int(result.model_id),
        "model_uri": result.model_uri,
        "topology": result.topology,
        "input_size": dg.MetadataValue.json(list(result.input_size)),
        "epochs": dg.MetadataValue.int(result.epochs),
        "val_accuracy": dg.MetadataValue.float(result.metrics["val_accuracy"] or 0.0),
        "training_seconds": dg.MetadataValue.float(result.training_seconds),
        "mlflow_run_id": result.mlflow_run_id,
    })


@dg.asset(
    partitions_def=plot_type_partitions,
    group_name="training",
    kinds={"python", "mlflow"},
    deps=[model],
    check_specs=[dg.AssetCheckSpec("validation_bad_recall", asset="thresholds",
                                   description=f"Bad recall at the chosen thresholds >= {BAD_RECALL_FLOOR}")],
)
def thresholds(
    context: dg.AssetExecutionContext, config: ThresholdsConfig, hydra: HydraResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    """Each label's threshold on the run-held-out validation (max F1, raised to the precision target); maybe activate."""
    from hydra_assets.ml.registry import CLI_USER, ensure_cli_user
    from hydra_assets.ml.thresholds_step import thresholds_step

    if config.user == CLI_USER:
        ensure_cli_user(hydra.db)
    result = thresholds_step(hydra.db, hydra.settings, _tracking(hydra, mlflow), context.partition_key,
                             activate=config.activate, user=config.user, dagster_run_id=context.run_id,
                             precision_target=config.precision_target or None, logger=context.log)
    bad_recall = result.validation["bad_recall"]
    return dg.MaterializeResult(
        metadata={
            "model": result.model_key,
            "thresholds": dg.MetadataValue.json(result.thresholds),
            "f1": dg.MetadataValue.json(result.f1),
            "val_macro_f1": dg.MetadataValue.float(result.validation["macro_f1"]),
            "split": result.validation["split"],
            "validation_runs": dg.MetadataValue.json(result.validation["runs"]),
            "warnings": dg.MetadataValue.json(result.validation["warnings"]),
            "val_bad_recall": dg.MetadataValue.float(bad_recall if bad_recall is not None else float("nan")),
            "activated": result.activated,
            "activation": result.activation_reason,
            "mlflow_run_id": result.mlflow_run_id,
        },
        check_results=[dg.AssetCheckResult(
            check_name="validation_bad_recall",
            passed=bad_recall is not None and bad_recall >= BAD_RECALL_FLOOR,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"bad_recall": dg.MetadataValue.float(bad_recall if bad_recall is not None else float("nan"))},
        )],
    )


@dg.asset(
    partitions_def=plot_type_partitions,
    group_name="training",
    kinds={"python", "mlflow"},
    deps=[model, thresholds],
)
def training_report(
    context: dg.AssetExecutionContext, hydra: HydraResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    """Every training and validation image where the model's top label differs from the human label."""
    from hydra_assets.ml.training_report import training_report_step

    result = training_report_step(hydra.db, hydra.settings, _tracking(hydra, mlflow), context.partition_key,
                                  dagster_run_id=context.run_id)
    return dg.MaterializeResult(metadata={
        "report_id": dg.MetadataValue.int(result.report_id),
        "model": result.model_key,
        "images": dg.MetadataValue.int(result.n_images),
        "disagreements": dg.MetadataValue.int(result.n_disagreements),
        "by_split": dg.MetadataValue.json(result.by_split),
        "mlflow_run_id": result.mlflow_run_id,
    })


TRAINING_ASSETS = [training_set, model, thresholds, training_report]
