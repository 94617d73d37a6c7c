using k8s;

namespace LbAllocator.TestApiServer;

/// <summary>The install manifests as `kubectl kustomize deploy/` renders them.</summary>
public static class InstallManifests
{
    private static readonly Lazy<List<object>> Rendered = new(Render);

    public static IReadOnlyList<object> Objects => Rendered.Value;

    /// <summary>The repository root: the directory holding LbAllocator.sln above the test binaries.</summary>
    public static string RepoRoot
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "LbAllocator.sln")))
            {
                dir = dir.Parent;
            }

            return dir?.FullName ?? throw new InvalidOperationException("LbAllocator.sln not found above " + AppContext.BaseDirectory);
        }
    }

    private static List<object> Render()
    {
        var start = new System.Diagnostics.ProcessStartInfo("kubectl", ["kustomize", Path.Combine(RepoRoot, "deploy")])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var process = System.Diagnostics.Process.Start(start) ?? throw new InvalidOperationException("kubectl did not start");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        process.WaitForExit();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"kubectl kustomize deploy/ failed (exit {process.ExitCode}; kustomize v3 or later is needed): {stderr.Result}");
        }

        return KubernetesYaml.LoadAllFromString(stdout.Result);
    }
}
