using k8s;
using k8s.Exceptions;

namespace LbAllocator.Kubernetes;

public static class KubeClientConfiguration
{
    /// <summary>--kubeconfig, else KUBECONFIG or ~/.kube/config, else the in-cluster service account.</summary>
    public static KubernetesClientConfiguration Load(string? kubeconfig)
    {
        try
        {
            return !string.IsNullOrEmpty(kubeconfig)
                ? KubernetesClientConfiguration.BuildConfigFromConfigFile(kubeconfig)
                : KubernetesClientConfiguration.BuildDefaultConfig();
        }
        catch (Exception e) when (e is not KubeConfigException)
        {
            // The client fails on malformed files with bare NullReference or YAML exceptions.
            throw new KubeConfigException($"kubeconfig {kubeconfig ?? "(default)"} could not be read: {e.Message}");
        }
    }
}
