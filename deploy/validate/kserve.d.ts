/* KServe's ServingRuntime (serving.kserve.io/v1alpha1) and InferenceService
 * (serving.kserve.io/v1beta1), as far as deploy/kserve uses them.
 *
 * No maintained package publishes KServe's CRD schemas for offline use, so these types are
 * written here from KServe's API reference (ServingRuntimeSpec, SupportedModelFormat,
 * PredictorSpec, ModelSpec). They cover the fields KServe defines; the Kubernetes types they
 * embed (Container, Volume, Toleration, ...) come from kubernetes-models, so a container in a
 * ServingRuntime is checked exactly like one in a Deployment. A field missing here makes the
 * check fail loudly (an excess property), never pass silently: add it from the reference. */
import type { IObjectMeta } from "@kubernetes-models/apimachinery/apis/meta/v1/ObjectMeta";
import type { IContainer } from "kubernetes-models/v1/Container";
import type { IVolume } from "kubernetes-models/v1/Volume";
import type { IToleration } from "kubernetes-models/v1/Toleration";
import type { IAffinity } from "kubernetes-models/v1/Affinity";
import type { ILocalObjectReference } from "kubernetes-models/v1/LocalObjectReference";
import type { IPodSpec } from "kubernetes-models/v1/PodSpec";

export type InferenceProtocol = "v1" | "v2" | "grpc-v1" | "grpc-v2";

export interface ISupportedModelFormat {
    name: string;
    version?: string;
    autoSelect?: boolean;
    /** >= 1; only used with autoSelect. */
    priority?: number;
}

export interface IServingRuntimeSpec {
    supportedModelFormats?: ISupportedModelFormat[];
    multiModel?: boolean;
    disabled?: boolean;
    protocolVersions?: InferenceProtocol[];
    /** At least one. */
    containers: [IContainer, ...IContainer[]];
    volumes?: IVolume[];
    nodeSelector?: Record<string, string>;
    affinity?: IAffinity;
    tolerations?: IToleration[];
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    imagePullSecrets?: ILocalObjectReference[];
    hostIPC?: boolean;
    grpcEndpoint?: string;
    grpcDataEndpoint?: string;
    httpDataEndpoint?: string;
    replicas?: number;
    storageHelper?: { disabled?: boolean };
}

export interface IServingRuntime {
    apiVersion: "serving.kserve.io/v1alpha1";
    kind: "ServingRuntime" | "ClusterServingRuntime";
    metadata: IObjectMeta & { name: string };
    spec: IServingRuntimeSpec;
}

export interface IModelFormat {
    name: string;
    version?: string;
}

/** PredictorSpec.model: a container (name optional) plus where the model is and what it is. */
export type IModelSpec = Omit<IContainer, "name"> & {
    name?: string;
    modelFormat: IModelFormat;
    runtime?: string;
    protocolVersion?: InferenceProtocol;
    storageUri?: string;
};

/** PredictorSpec: the pod fields inline, the component extension fields, and the model. */
export type IPredictorSpec = Omit<Partial<IPodSpec>, "containers"> & {
    containers?: IContainer[];
    model?: IModelSpec;
    minReplicas?: number;
    maxReplicas?: number;
    scaleTarget?: number;
    scaleMetric?: "cpu" | "memory" | "concurrency" | "rps";
    containerConcurrency?: number;
    timeout?: number;
    canaryTrafficPercent?: number;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    deploymentStrategy?: { type?: "RollingUpdate" | "Recreate" };
};

export interface IInferenceService {
    apiVersion: "serving.kserve.io/v1beta1";
    kind: "InferenceService";
    metadata: IObjectMeta & { name: string };
    spec: { predictor: IPredictorSpec };
}
