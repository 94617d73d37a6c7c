using System.Net;
using k8s.Models;

namespace LbAllocator.Kubernetes.Client;

/// <summary>The API server refused a request, or ended a watch with an ERROR event; with the Status it sent when it sent one.</summary>
public sealed class KubeApiException(HttpStatusCode statusCode, V1Status? status, string message) : Exception(message)
{
    public HttpStatusCode StatusCode { get; } = statusCode;

    public V1Status? Status { get; } = status;
}

/// <summary>The kubeconfig or the in-cluster service account cannot give a connection: the message says why.</summary>
public sealed class KubeConfigException(string message) : Exception(message);
