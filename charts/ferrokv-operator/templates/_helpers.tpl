{{/* Chart name, overridable. */}}
{{- define "ferrokv-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, with the chart name appended unless it already contains it. */}}
{{- define "ferrokv-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Name of the cluster-scoped objects (ClusterRole, ClusterRoleBinding): the full name plus the
release namespace, so that releases of the same name in two namespaces do not collide.
*/}}
{{- define "ferrokv-operator.clusterName" -}}
{{- printf "%s-%s" (include "ferrokv-operator.fullname" .) .Release.Namespace | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ferrokv-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "ferrokv-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: ferrokv
{{- end }}

{{- define "ferrokv-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ferrokv-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ferrokv-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ferrokv-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ferrokv-operator.leaseName" -}}
{{- default (include "ferrokv-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "ferrokv-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "ferrokv-operator.nodeImage" -}}
{{- printf "%s:%s" .Values.nodeImage.repository (default .Chart.AppVersion .Values.nodeImage.tag) }}
{{- end }}

{{- /* The operator's API rules: one list for the ClusterRole and for the per-namespace Roles. */}}
{{- define "ferrokv-operator.rules" -}}
- apiGroups: ["ferrokv.io"]
  resources: ["kvclusters"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["ferrokv.io"]
  resources: ["kvclusters/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["ferrokv.io"]
  # Children carry ownerReferences with blockOwnerDeletion, which needs update on this.
  resources: ["kvclusters/finalizers"]
  verbs: ["update"]
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  # deletecollection: a deleted KvCluster's StatefulSets go at once, by label.
  verbs: ["get", "list", "watch", "create", "patch", "delete", "deletecollection"]
- apiGroups: [""]
  # The data volumes of a deleted KvCluster, which no owner reference covers.
  resources: ["persistentvolumeclaims"]
  verbs: ["deletecollection"]
- apiGroups: [""]
  resources: ["services", "configmaps", "secrets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "patch", "delete"]
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
